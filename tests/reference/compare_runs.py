"""Compares two `tl quickstart` (or `tl run`) output trees file by file: every
`weights.safetensors` and `model.onnx` must be byte-identical, and every `metrics.json`
identical once its wall-clock `seconds` fields are removed. Issue 24's acceptance check
(the run pipeline moved into a library with behaviour unchanged).

    python3 tests/reference/compare_runs.py OLD_DIR NEW_DIR

Standard library only (Python 3.11). Exits 1 and lists the files that differ.
"""

import json
import os
import sys

CHECKED = ("metrics.json", "weights.safetensors", "model.onnx")


def without_timings(v):
    if isinstance(v, dict):
        return {k: without_timings(x) for k, x in v.items() if k not in ("seconds", "timings_seconds")}
    if isinstance(v, list):
        return [without_timings(x) for x in v]
    return v


def main(old, new):
    counts = {f: [0, 0] for f in CHECKED}
    bad = []
    for root, _, files in os.walk(old):
        for f in files:
            if f not in CHECKED:
                continue
            a = os.path.join(root, f)
            b = os.path.join(new, os.path.relpath(a, old))
            if not os.path.exists(b):
                bad.append(("missing", b))
                continue
            da, db = open(a, "rb").read(), open(b, "rb").read()
            if da == db:
                counts[f][0] += 1
            elif f == "metrics.json" and without_timings(json.loads(da)) == without_timings(json.loads(db)):
                counts[f][1] += 1
            else:
                bad.append(("differs", b))
    for f, (same, timings) in counts.items():
        print(f"{f}: {same} byte-identical, {timings} identical but for wall-clock seconds")
    for what, path in bad:
        print(f"{what}: {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
