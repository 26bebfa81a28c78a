#!/usr/bin/env python3
"""Tiny PyTorch-format checkpoints for the reader's tests, written without PyTorch.

Python's own pickle module writes the same opcodes `torch.save` does when the
globals it references are `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`
and friends; here stand-ins with those module paths are registered so that pickle
emits exactly those GLOBALs and persistent ids. Two containers:
  tiny_legacy.pth: the legacy layout (magic, protocol 1001, sys info, object, keys, raw storages)
  tiny_zip.pth:    the zip layout (archive/data.pkl + archive/data/<key>)
Contents (same in both):
  "conv.weight": float32 [2, 3] = [[0, 1, 2], [3, 4, 5]] / 4
  "conv.bias":   float32 [3], a *transposed view* (stride 2) of storage "1" = [10, 11, 12, 13, 14, 15]: [10, 12, 14]
  "bn.num_batches_tracked": int64 [] = 7
  "half": float16 [2] = [1.5, -2.0]
  "param": a Parameter (torch._utils._rebuild_parameter) wrapping float32 [1] = [42]
Usage: python3 tests/reference/make_checkpoint_fixtures.py
Produced with: Python 3.11.7 (pickle protocol 2), NumPy 2.4.6.
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

OUT = "tests/fixtures/checkpoints"

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _storage_class(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
    return cls


FloatStorage = _storage_class("FloatStorage")
LongStorage = _storage_class("LongStorage")
HalfStorage = _storage_class("HalfStorage")


def _rebuild_tensor_v2(*args):
    raise AssertionError("only used as a pickled reference")


def _rebuild_parameter(*args):
    raise AssertionError("only used as a pickled reference")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_parameter.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch_utils._rebuild_parameter = _rebuild_parameter


class Storage:
    def __init__(self, cls, key, data):
        self.cls, self.key, self.data = cls, key, data


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


STORAGES = [
    Storage(FloatStorage, "0", np.arange(6, dtype=np.float32) / 4),
    Storage(FloatStorage, "1", np.arange(10, 16, dtype=np.float32)),
    Storage(LongStorage, "2", np.array([7], dtype=np.int64)),
    Storage(HalfStorage, "3", np.array([1.5, -2.0], dtype=np.float16)),
    Storage(FloatStorage, "4", np.array([42.0], dtype=np.float32)),
]


def state_dict():
    s = STORAGES
    d = collections.OrderedDict()
    d["conv.weight"] = Tensor(s[0], 0, (2, 3), (3, 1))
    d["conv.bias"] = Tensor(s[1], 0, (3,), (2,))
    d["bn.num_batches_tracked"] = Tensor(s[2], 0, (), ())
    d["half"] = Tensor(s[3], 0, (2,), (1,))
    d["param"] = Parameter(Tensor(s[4], 0, (1,), (1,)))
    return d


class Pickler(pickle.Pickler):
    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", obj.cls, obj.key, "cpu", len(obj.data))
            return pid + (None,) if self.legacy else pid
        return None


def legacy():
    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
    Pickler(f, legacy=True).dump(state_dict())
    pickle.dump([s.key for s in STORAGES], f, protocol=2)
    for s in STORAGES:
        f.write(struct.pack("<q", len(s.data)))
        f.write(s.data.tobytes())
    return f.getvalue()


def zipped():
    pkl = io.BytesIO()
    Pickler(pkl, legacy=False).dump(state_dict())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl.getvalue())
        for s in STORAGES:
            z.writestr(f"archive/data/{s.key}", s.data.tobytes())
        z.writestr("archive/version", "3\n")
    return out.getvalue()


if __name__ == "__main__":
    with open(f"{OUT}/tiny_legacy.pth", "wb") as f:
        f.write(legacy())
    with open(f"{OUT}/tiny_zip.pth", "wb") as f:
        f.write(zipped())
