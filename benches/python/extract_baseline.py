#!/usr/bin/env python3
"""Python baselines for `cargo xtask bench-report` (feature extraction).

  bare:     ONNX Runtime alone on ready tensors (zeros are fine: cost does not depend on values)
  pipeline: a straightforward Python pipeline: mnist-5k CSV rows -> Pillow (grayscale to RGB,
            bilinear resize of the shorter side to floor(size / 0.875), central crop) -> NumPy
            normalisation -> onnxruntime, batch by batch
  folder:   the same pipeline over a folder of JPEGs (`cargo xtask make-photos`): Pillow
            decodes each file, then resizes its shorter side and crops as above
  text:     a straightforward sentence-embedding pipeline: the first ROWS non-empty texts of
            the Rotten Tomatoes CSV in file order, `tokenizers` (truncation at 256, padding
            to the longest of each batch), onnxruntime, mask-weighted mean, L2 normalisation

Prints one JSON object: {"mode", "size", "batch", "threads", "rows", "seconds", "rows_per_second", versions}.
Usage: extract_baseline.py bare|pipeline MODEL.onnx MNIST.csv.gz SIZE BATCH THREADS
       extract_baseline.py folder MODEL.onnx DIR SIZE BATCH THREADS
       extract_baseline.py text MODEL_DIR CORPUS.csv.bz2 ROWS BATCH THREADS
Timing starts after the session is created and the data listed or read; it covers
preprocessing and inference, as `tl extract`'s rows_per_second does (which also covers
writing the feature store).
Run with: Python 3.11.7, NumPy 2.4.6, Pillow 13.0.0, onnxruntime 1.31.1, tokenizers 0.23.3.
"""

import bz2
import csv
import gzip
import io
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image


def session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def preprocess(pixels, size):
    im = Image.fromarray(pixels.reshape(28, 28).astype(np.uint8), "L").convert("RGB")
    t = math.floor(size / 0.875 + 1e-9)
    im = im.resize((t, t), Image.BILINEAR)
    o = (t - size) // 2
    im = im.crop((o, o, o + size, o + size))
    return ((np.asarray(im, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)


def preprocess_photo(path, size):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    t = math.floor(size / 0.875 + 1e-9)
    rw, rh = (t, h * t // w) if w <= h else (w * t // h, t)
    rw, rh = max(rw, size), max(rh, size)
    im = im.resize((rw, rh), Image.BILINEAR)
    left, top = (rw - size) // 2, (rh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return ((np.asarray(im, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)


def report(mode, size, batch, threads, rows, seconds, **extra):
    print(json.dumps({
        "mode": mode, "size": size, "batch": batch, "threads": threads, "rows": rows,
        "seconds": seconds, "rows_per_second": rows / seconds,
        "python": sys.version.split()[0], "numpy": np.__version__, "pillow": PIL.__version__,
        "onnxruntime": ort.__version__, **extra,
    }))


def folder(model, root, size, batch, threads):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg"))
    s = session(model, threads)
    start = time.perf_counter()
    for i in range(0, len(files), batch):
        x = np.stack([preprocess_photo(f, size) for f in files[i : i + batch]])
        s.run(["features"], {"input": x})
    report("folder", size, batch, threads, len(files), time.perf_counter() - start)


def text(model_dir, corpus, rows, batch, threads):
    import tokenizers

    with bz2.open(corpus, "rt", encoding="utf-8", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f) if r["text"].strip()][:rows]
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.enable_padding()
    s = session(os.path.join(model_dir, "model.onnx"), threads)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tok.encode_batch(texts[i : i + batch])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        types = np.array([e.type_ids for e in enc], dtype=np.int64)
        (hidden,) = s.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        m = mask[:, :, None].astype(np.float32)
        v = (hidden * m).sum(1) / m.sum(1)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    report("text", None, batch, threads, len(texts), time.perf_counter() - start, tokenizers=tokenizers.__version__)


def main():
    mode, model, data, size, batch, threads = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
    if mode == "folder":
        return folder(model, data, size, batch, threads)
    if mode == "text":
        return text(model, data, size, batch, threads)
    with gzip.open(data, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)[:, :784]
    s = session(model, threads)
    start = time.perf_counter()
    if mode == "bare":
        x = np.zeros((batch, 3, size, size), dtype=np.float32)
        for i in range(0, len(rows), batch):
            s.run(["features"], {"input": x[: min(batch, len(rows) - i)]})
    else:
        for i in range(0, len(rows), batch):
            x = np.stack([preprocess(r, size) for r in rows[i : i + batch]])
            s.run(["features"], {"input": x})
    report(mode, size, batch, threads, len(rows), time.perf_counter() - start)


if __name__ == "__main__":
    main()
