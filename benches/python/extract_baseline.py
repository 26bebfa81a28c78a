#!/usr/bin/env python3
"""Python baselines for `cargo xtask bench-report` (feature extraction of mnist-5k).

  bare:     ONNX Runtime alone on ready tensors (zeros are fine: cost does not depend on values)
  pipeline: a straightforward Python pipeline: CSV rows -> Pillow (grayscale to RGB, bilinear
            resize of the shorter side to floor(size / 0.875), central crop) -> NumPy
            normalisation -> onnxruntime, batch by batch

Prints one JSON object: {"mode", "size", "batch", "threads", "rows", "seconds", "rows_per_second", versions}.
Usage: extract_baseline.py MODE MODEL.onnx MNIST.csv.gz SIZE BATCH THREADS
Run with: Python 3.11.7, NumPy 2.4.6, Pillow 13.0.0, onnxruntime 1.31.1.
"""

import gzip
import json
import math
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


def main():
    mode, model, data, size, batch, threads = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
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
    seconds = time.perf_counter() - start
    print(json.dumps({
        "mode": mode, "size": size, "batch": batch, "threads": threads, "rows": len(rows),
        "seconds": seconds, "rows_per_second": len(rows) / seconds,
        "python": sys.version.split()[0], "numpy": np.__version__, "pillow": PIL.__version__, "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
