"""scikit-learn baseline for the linear-probe benchmark (`cargo xtask bench-report`).

Made with: Python 3.11, scikit-learn 1.9.1, numpy 2.4.6, scipy 1.17.1
Usage:     python3 probe_baseline.py X.npy y.npy C

Fits LogisticRegression(solver="lbfgs", tol=1e-10) as the reference objective
F = C * sum_i loss_i + 0.5 * ||W||^2 (intercept unpenalised), then fits again with
tol = 1e-2, 1e-3, ... and reports the first (loosest) tol whose objective is within
1e-5 relative of the reference, with its wall time. Threads: whatever OPENBLAS_NUM_THREADS
/ OMP_NUM_THREADS allow (xtask sets them to the benchmark's thread count).
"""

import json
import sys
import time
import warnings

import numpy as np
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

warnings.simplefilter("ignore", ConvergenceWarning)


def objective(clf, x, y, c):
    z = x @ clf.coef_.T + clf.intercept_
    yi = np.searchsorted(clf.classes_, y)
    loss = logsumexp(z, axis=1) - z[np.arange(len(y)), yi]
    return float(c * np.sum(loss) + 0.5 * np.sum(clf.coef_ ** 2))


def fit(x, y, c, tol):
    clf = LogisticRegression(C=c, solver="lbfgs", tol=tol, max_iter=100000)
    t = time.perf_counter()
    clf.fit(x, y)
    return clf, time.perf_counter() - t


def main():
    x = np.load(sys.argv[1]).astype(np.float64)
    y = np.load(sys.argv[2])
    c = float(sys.argv[3])
    ref, ref_s = fit(x, y, c, 1e-10)
    f_ref = objective(ref, x, y, c)
    tried = []
    chosen = None
    for k in range(2, 11):
        tol = 10.0 ** -k
        clf, s = fit(x, y, c, tol)
        f = objective(clf, x, y, c)
        rel = (f - f_ref) / abs(f_ref)
        tried.append({"tol": tol, "seconds": s, "objective": f, "rel": rel, "iterations": int(clf.n_iter_[0])})
        if rel <= 1e-5:
            chosen = tried[-1]
            break
    print(json.dumps({
        "reference_objective": f_ref,
        "reference_seconds": ref_s,
        "reference_iterations": int(ref.n_iter_[0]),
        "chosen": chosen,
        "tried": tried,
    }))


if __name__ == "__main__":
    main()
