"""Golden values of LogME, H-score, NCE and LEEP for `crates/tl-adapt/tests/transfer.rs`.

LogME is transcribed from the authors' reference implementation (`LogME.py`,
`each_evidence` and `LogME.fit`, github.com/thuml/LogME: eigendecomposition of FᵀF, at most
11 fixed-point steps, 1 % tolerance on α/β); H-score, NCE and LEEP from their papers'
definitions. The inputs are built from formulas, so Rust builds the same ones.

Produced with Python 3.11, NumPy 2.4.6 (`python3 tests/reference/logme_reference.py`).
"""
import json
import numpy as np


def features(n, d):
    i = np.arange(n)[:, None]
    j = np.arange(d)[None, :]
    return (np.sin(0.7 * i + 1.3 * j) + 0.1 * ((i * j) % 7)).astype(np.float32).astype(np.float64)


def labels(n, k):
    return np.array([(i * 5 + i // 7) % k for i in range(n)])


def each_evidence(y_, f, fh, v, s, vh, N, D):
    epsilon = 1e-5
    alpha = 1.0
    beta = 1.0
    lam = alpha / beta
    tmp = vh @ (f @ np.ascontiguousarray(y_))
    for _ in range(11):
        gamma = (s / (s + lam)).sum()
        m = v @ (tmp * beta / (alpha + beta * s))
        alpha_de = (m * m).sum()
        alpha = gamma / (alpha_de + epsilon)
        beta_de = ((y_ - fh @ m) ** 2).sum()
        beta = (N - gamma) / (beta_de + epsilon)
        new_lam = alpha / beta
        if np.abs(new_lam - lam) / lam < 0.01:
            break
        lam = new_lam
    evidence = D / 2.0 * np.log(alpha) + N / 2.0 * np.log(beta) \
        - 0.5 * np.sum(np.log(alpha + beta * s)) - beta / 2.0 * (beta_de + epsilon) \
        - alpha / 2.0 * (alpha_de + epsilon) - N / 2.0 * np.log(2 * np.pi)
    return evidence / N


def logme(f, y, k):
    N, D = f.shape
    s, v = np.linalg.eigh(f.T @ f)
    s = np.maximum(s, 0.0)
    return float(np.mean([each_evidence((y == c).astype(np.float64), f.T, f, v, s, v.T, N, D) for c in range(k)]))


def h_score(f, y, k):
    fc = f - f.mean(0)
    g = np.zeros_like(fc)
    for c in range(k):
        g[y == c] = fc[y == c].mean(0)
    cov_f = fc.T @ fc / len(f)
    cov_g = g.T @ g / len(f)
    ridge = 1e-6 * np.mean(np.diag(cov_f))
    return float(np.trace(np.linalg.inv(cov_f + ridge * np.eye(f.shape[1])) @ cov_g))


def source_probs(n, z):
    i = np.arange(n)[:, None]
    j = np.arange(z)[None, :]
    logits = 2.0 * np.cos(0.9 * i + 0.4 * j * j)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def nce(p, y, k):
    z = p.argmax(1)
    joint = np.zeros((p.shape[1], k))
    for zi, yi in zip(z, y):
        joint[zi, yi] += 1.0 / len(y)
    pz = joint.sum(1, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / np.where(pz > 0, pz, 1))[nz])).sum())


def leep(p, y, k):
    joint = np.zeros((p.shape[1], k))
    for row, yi in zip(p, y):
        joint[:, yi] += row / len(y)
    cond = joint / joint.sum(1, keepdims=True)
    return float(np.mean(np.log((p @ cond)[np.arange(len(y)), y])))


n, d, k, z = 60, 8, 3, 5
f, y, p = features(n, d), labels(n, k), source_probs(n, z)
print(json.dumps({"n": n, "d": d, "classes": k, "source_classes": z,
                  "logme": logme(f, y, k), "h_score": h_score(f, y, k),
                  "nce": nce(p, y, k), "leep": leep(p, y, k)}, indent=2))
