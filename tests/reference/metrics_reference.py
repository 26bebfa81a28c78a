"""Golden values for tl-eval's metrics (tests/golden/metrics.json).

Run from the repository root:  python3 tests/reference/metrics_reference.py
Made with Python 3, NumPy 2.4.6, SciPy and scikit-learn 1.9.1 (versions are written into
the JSON). The inputs (logits and labels) are stored in the JSON too, so the Rust test
reads exactly what this script scored.

- confusion matrix, per-class precision/recall/F1/support, accuracy, balanced accuracy,
  macro-F1, log loss: scikit-learn (`zero_division=0`).
- expected calibration error: a naive NumPy transcription of Guo et al. (2017): 15
  equal-width bins (lo, hi] of the top-label confidence, sum of |B|/n |acc(B) - conf(B)|.
- temperature scaling: T minimising the mean negative log-likelihood of softmax(z / T) on
  the validation logits, by SciPy's bounded scalar minimiser (xatol 1e-12).
"""

import json
import sys

import numpy as np
import scipy
import sklearn
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

BINS = 15


def make_case(rng, n, k, scale, absent_class):
    """Over-confident logits: the true class gets a boost, then everything is scaled."""
    y = rng.integers(0, k, size=n)
    if absent_class is not None:
        y[y == absent_class] = (absent_class + 1) % k
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.2
    return (z * scale), y


def ece(p, y):
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    right = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)


def nll(z, y, t):
    return float(-log_softmax(z / t, axis=1)[np.arange(len(y)), y].mean())


def case(name, seed, n_val, n_test, k, scale, absent_class=None):
    rng = np.random.default_rng(seed)
    zv, yv = make_case(rng, n_val, k, scale, absent_class)
    zt, yt = make_case(rng, n_test, k, scale, absent_class)
    p = softmax(zt, axis=1)
    pred = p.argmax(axis=1)
    labels = list(range(k))
    prec, rec, f1, support = precision_recall_fscore_support(
        yt, pred, labels=labels, zero_division=0
    )
    res = minimize_scalar(
        lambda t: nll(zv, yv, t), bounds=(0.05, 20.0), method="bounded",
        options={"xatol": 1e-12},
    )
    t = float(res.x)
    pt = softmax(zt / t, axis=1)
    return {
        "name": name,
        "classes": k,
        "val_logits": zv.tolist(),
        "val_labels": yv.tolist(),
        "test_logits": zt.tolist(),
        "test_labels": yt.tolist(),
        "confusion": confusion_matrix(yt, pred, labels=labels).tolist(),
        "precision": prec.tolist(),
        "recall": rec.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "accuracy": accuracy_score(yt, pred),
        "balanced_accuracy": balanced_accuracy_score(yt, pred),
        "macro_f1": f1_score(yt, pred, labels=labels, average="macro", zero_division=0),
        "log_loss": log_loss(yt, p, labels=labels),
        "ece": ece(p, yt),
        "temperature": t,
        "log_loss_scaled": log_loss(yt, pt, labels=labels),
        "ece_scaled": ece(pt, yt),
    }


def main():
    out = {
        "provenance": {
            "script": "tests/reference/metrics_reference.py",
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "ece_bins": BINS,
        },
        "cases": [
            case("overconfident-4", 11, 300, 400, 4, 3.0),
            case("underconfident-3", 12, 250, 300, 3, 0.4),
            # Class 2 never occurs in the truth (sklearn: recall 0, excluded from
            # balanced accuracy, kept in macro-F1 when predicted).
            case("absent-class-5", 13, 200, 250, 5, 1.5, absent_class=2),
        ],
    }
    with open("tests/golden/metrics.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
