#!/usr/bin/env python3
"""Independent reference for the EfficientNet-Lite0 and MobileNetV2 conversions.

Reads the legacy `torch.save` checkpoints with Python's own `pickle` module (no
PyTorch, no ONNX, none of tl's code), runs each network's forward pass written
directly in NumPy from those weights (BatchNorm applied as BatchNorm, TensorFlow
"SAME" padding computed for the actual input size), and writes the logits and
the first features of deterministic input batches at 224 and 112 px to
`tests/golden/imagenet_reference.json`.

The inputs are x[n, c, h, w] = 1.5 * sin(0.013 * (n + 1) * i + 0.7 * n) with i the flat
index of (c, h, w) within sample n, computed in float64 and cast to float32;
`crates/tl-runtime/tests/conversion_reference.rs` builds the same tensors.

Usage (after `cargo xtask fetch-models efficientnet-lite0 mobilenet-v2`):
    python3 tests/reference/imagenet_reference.py EFFICIENTNET.pth MOBILENET.pth

Produced with: Python 3.11.7, NumPy 2.4.6 (see "provenance" in the JSON).
"""

import collections
import json
import pickle
import platform
import struct
import sys

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}


class _Storage:
    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(storage, offset, size, stride, *_):
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        tag, storage_type, key, _location, numel = pid[:5]
        assert tag == "storage"
        return _Storage(STORAGE_DTYPES[storage_type.name], key, numel)


def load_legacy_checkpoint(path):
    """The legacy torch.save layout: magic, protocol, sys info, object, keys, raw storages."""
    with open(path, "rb") as f:
        magic = pickle.load(f)
        assert magic == 0x1950A86A20F9469CFC6C, "not a legacy torch.save file"
        assert pickle.load(f) == 1001
        pickle.load(f)  # sys info
        state = _Unpickler(f).load()
        keys = pickle.load(f)
        by_key = {}
        for t in state.values():
            by_key[t.storage.key] = t.storage
        raw = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(by_key[key].dtype)
            raw[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    out = {}
    for name, t in state.items():
        base = raw[t.storage.key]
        itemsize = base.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            base[t.offset:], shape=t.size, strides=[s * itemsize for s in t.stride]
        )
        out[name] = np.array(arr, dtype=np.float64 if base.dtype.kind == "f" else base.dtype)
    return out


# ------------------------------------------------------------------ layers (float64)

def pad_same(x, k, s):
    """TensorFlow SAME padding for the actual input size (extra pixel at the end)."""
    _, _, h, w = x.shape
    def amounts(n):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    (t, b), (l, r) = amounts(h), amounts(w)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def pad_sym(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def conv(x, w, s, depthwise=False):
    """Valid convolution of an already padded input. w: [O, I/g, k, k]."""
    k = w.shape[-1]
    if k == 1 and not depthwise:
        y = np.einsum("nchw,oc->nohw", x[:, :, ::s, ::s], w[:, :, 0, 0], optimize=True)
        return y
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    if depthwise:
        return np.einsum("nchwij,cij->nchw", win, w[:, 0], optimize=True)
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def bn(x, p, prefix, eps):
    g, b = p[prefix + ".weight"], p[prefix + ".bias"]
    m, v = p[prefix + ".running_mean"], p[prefix + ".running_var"]
    scale = g / np.sqrt(v + eps)
    return x * scale[None, :, None, None] + (b - m * scale)[None, :, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def head(x, p, fc):
    feats = x.mean(axis=(2, 3))
    return feats @ p[fc + ".weight"].T + p[fc + ".bias"], feats


# ------------------------------------------------------------------ networks

def efficientnet_lite0(p, x):
    eps = 1e-3
    x = relu6(bn(conv(pad_same(x, 3, 2), p["_conv_stem.weight"], 2), p, "_bn0", eps))
    stages = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
    i = 0
    for reps, k, stride, e, cin, cout in stages:
        for r in range(reps):
            inp, s = (cin, stride) if r == 0 else (cout, 1)
            q = f"_blocks.{i}."
            y = x
            if e != 1:
                y = relu6(bn(conv(y, p[q + "_expand_conv.weight"], 1), p, q + "_bn0", eps))
            y = relu6(bn(conv(pad_same(y, k, s), p[q + "_depthwise_conv.weight"], s, True), p, q + "_bn1", eps))
            y = bn(conv(y, p[q + "_project_conv.weight"], 1), p, q + "_bn2", eps)
            x = y + x if (s == 1 and inp == cout) else y
            i += 1
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1), p, "_bn1", eps))
    return head(x, p, "_fc")


def mobilenet_v2(p, x):
    eps = 1e-5
    x = relu6(bn(conv(pad_sym(x, 1), p["features.0.0.weight"], 2), p, "features.0.1", eps))
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    inp, idx = 32, 1
    for t, c, n, stride in settings:
        for r in range(n):
            s = stride if r == 0 else 1
            q = f"features.{idx}.conv."
            y, j = x, 0
            if t != 1:
                y = relu6(bn(conv(y, p[q + "0.0.weight"], 1), p, q + "0.1", eps))
                j = 1
            y = relu6(bn(conv(pad_sym(y, 1), p[q + f"{j}.0.weight"], s, True), p, q + f"{j}.1", eps))
            y = bn(conv(y, p[q + f"{j + 1}.weight"], 1), p, q + f"{j + 2}", eps)
            x = y + x if (s == 1 and inp == c) else y
            inp, idx = c, idx + 1
    x = relu6(bn(conv(x, p["features.18.0.weight"], 1), p, "features.18.1", eps))
    return head(x, p, "classifier.1")


def inputs(batch, size):
    n = np.arange(batch, dtype=np.float64)[:, None]
    i = np.arange(3 * size * size, dtype=np.float64)[None, :]
    return (1.5 * np.sin(0.013 * (n + 1) * i + 0.7 * n)).astype(np.float32).reshape(batch, 3, size, size)


def main():
    eff_path, mb_path = sys.argv[1], sys.argv[2]
    out = {
        "provenance": {
            "script": "tests/reference/imagenet_reference.py",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "inputs": "x[n,c,h,w] = 1.5*sin(0.013*(n+1)*i + 0.7*n), i = flat index of (c,h,w), float64 -> float32",
            "features_kept": 32,
        },
        "models": {},
    }
    for model_id, path, fn in [("efficientnet-lite0", eff_path, efficientnet_lite0), ("mobilenet-v2", mb_path, mobilenet_v2)]:
        params = load_legacy_checkpoint(path)
        entry = {}
        for size in (224, 112):
            x = inputs(2, size).astype(np.float64)
            logits, feats = fn(params, x)
            entry[str(size)] = {
                "logits": [[float(f"{v:.7g}") for v in row] for row in logits],
                "features_head": [[float(f"{v:.7g}") for v in row[:32]] for row in feats],
                "argmax": [int(a) for a in logits.argmax(axis=1)],
            }
            print(model_id, size, "argmax", entry[str(size)]["argmax"], file=sys.stderr)
        out["models"][model_id] = entry
    with open("tests/golden/imagenet_reference.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
