"""Golden values for tl-head's linear probe: scikit-learn's L2-regularised logistic regression.

Made with: Python 3.11, scikit-learn 1.9.1, numpy 2.4.6, scipy 1.17.1
Run:       python3 tests/reference/probe_reference.py  (writes tests/golden/probe/digits.json)

Data: scikit-learn's bundled digits (the registry's `sklearn-digits` is the same
digits.csv.gz from the same wheel), pixel values 0-16 as float64 features, rows 0..1199 for
training and 1200..1796 for testing. The objective is the classic form
    F(W, b) = C * sum_i s_i * loss_i + 0.5 * ||W||^2     (intercept not penalised)
with s_i the class weight of row i; it is computed here in float64 from sklearn's solution
(solver="lbfgs", tol=1e-10, max_iter=10000). For two classes sklearn fits one coefficient
vector (a sigmoid), which tl reproduces with the first class's logit fixed at 0.
"""

import json
import pathlib

import numpy as np
import sklearn
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression


def objective(clf, x, y, c, sw):
    w, b = clf.coef_, clf.intercept_
    z = x @ w.T + b
    if z.shape[1] == 1:  # binary: logits (0, z)
        z = np.hstack([np.zeros_like(z), z])
        yi = (y == clf.classes_[1]).astype(int)
    else:
        yi = np.searchsorted(clf.classes_, y)
    loss = logsumexp(z, axis=1) - z[np.arange(len(y)), yi]
    return float(c * np.sum(sw * loss) + 0.5 * np.sum(w * w))


def case(name, x, y, split, c, class_weight=None, rows=None):
    if rows is not None:
        x, y = x[rows], y[rows]
    xtr, ytr, xte, yte = x[:split], y[:split], x[split:], y[split:]
    clf = LogisticRegression(C=c, solver="lbfgs", tol=1e-10, max_iter=10000, class_weight=class_weight)
    clf.fit(xtr, ytr)
    classes = list(clf.classes_)
    if class_weight == "balanced":
        counts = np.array([np.sum(ytr == k) for k in classes])
        cw = len(ytr) / (len(classes) * counts)
        sw = cw[np.searchsorted(clf.classes_, ytr)]
    else:
        sw = np.ones(len(ytr))
    return {
        "name": name,
        "classes": [int(k) for k in classes],
        "rows": None if rows is None else [int(i) for i in rows],
        "train_rows": split,
        "c": c,
        "class_weight": class_weight,
        "objective": objective(clf, xtr, ytr, c, sw),
        "iterations": int(clf.n_iter_[0]),
        "test_accuracy": float(np.mean(clf.predict(xte) == yte)),
        "test_size": int(len(yte)),
    }


def main():
    d = load_digits()
    x, y = d.data.astype(np.float64), d.target
    cases = [
        case("multinomial C=0.01", x, y, 1200, 0.01),
        case("multinomial C=1", x, y, 1200, 1.0),
        case("multinomial balanced C=0.1", x, y, 1200, 0.1, "balanced"),
    ]
    rows = np.flatnonzero(np.isin(y, [3, 8]))
    cases.append(case("binary 3 vs 8 C=0.1", x, y, 250, 0.1, rows=rows))
    out = {
        "provenance": "tests/reference/probe_reference.py; scikit-learn %s, numpy %s" % (sklearn.__version__, np.__version__),
        "cases": cases,
    }
    path = pathlib.Path(__file__).resolve().parents[1] / "golden" / "probe" / "digits.json"
    path.write_text(json.dumps(out) + "\n")
    for c in cases:
        print(c["name"], c["objective"], c["iterations"], c["test_accuracy"])


if __name__ == "__main__":
    main()
