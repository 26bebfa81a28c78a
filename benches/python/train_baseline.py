#!/usr/bin/env python3
"""PyTorch baselines for the training engine (`cargo xtask bench-report --only finetune`).

  finetune SIZE BATCH THREADS STEPS
      torchvision's MobileNetV2 in train mode (BatchNorm on batch statistics), every
      parameter trainable, forward to the pooled 1280 features and backward of their sum
      (the gradient of ones that tl's bench feeds back), no gradient for the input, a fresh
      batch each step. Reports the median seconds per step of STEPS steps after 3 warm-up
      steps, and the peak RSS.
  gemm M K N THREADS STEPS
      C = A @ B for A [M, K], B [K, N] (MiniLM's shapes: 32*64 rows by 384 x 384, 384 x 1536).
  attention BATCH HEADS SEQ DIM THREADS STEPS
      softmax(Q K^T / sqrt(DIM)) V forward and backward for Q, K, V [BATCH, HEADS, SEQ, DIM]
      (written out, not the fused kernel, as tl computes it).

Prints one JSON object per call: {"mode", ..., "seconds_median", "per_second", versions}.
Run in its own virtual environment, never in CI:
    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.15.0 torchvision==0.29.2
    /tmp/torch/bin/python benches/python/train_baseline.py finetune 112 16 2 20
Measured with: Python 3.11.7, torch 2.15.0 (PyPI's default wheel, run on the CPU),
torchvision 0.29.2.
"""

import json
import platform
import resource
import statistics
import sys
import time

import torch
import torchvision


def versions():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
    }


def timed(step, steps, warmup=3):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def finetune(size, batch, steps):
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2()
    model.train()
    features = model.features
    gen = torch.Generator().manual_seed(1)

    def step():
        x = torch.randn(batch, 3, size, size, generator=gen)
        for p in features.parameters():
            p.grad = None
        y = features(x).mean(dim=(2, 3))
        y.backward(torch.ones_like(y))

    seconds = timed(step, steps)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": "finetune",
        "size": size,
        "batch": batch,
        "seconds_median": seconds,
        "per_second": batch / seconds,
        "peak_rss_mib": peak_kib / 1024,
    }


def gemm(m, k, n, steps):
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(m, k, generator=gen)
    b = torch.randn(k, n, generator=gen)
    seconds = timed(lambda: a @ b, steps)
    return {
        "mode": "gemm",
        "m": m,
        "k": k,
        "n": n,
        "seconds_median": seconds,
        "gflops": 2 * m * k * n / seconds / 1e9,
    }


def attention(batch, heads, seq, dim, steps):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (
        torch.randn(batch, heads, seq, dim, generator=gen, requires_grad=True) for _ in range(3)
    )

    def step():
        for t in (q, k, v):
            t.grad = None
        s = (q @ k.transpose(-1, -2)) / dim**0.5
        out = torch.softmax(s, dim=-1) @ v
        out.backward(torch.ones_like(out))

    seconds = timed(step, steps)
    return {
        "mode": "attention",
        "batch": batch,
        "heads": heads,
        "seq": seq,
        "dim": dim,
        "seconds_median": seconds,
    }


def main():
    mode, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if mode == "finetune":
        size, batch, threads, steps = args
        torch.set_num_threads(threads)
        out = finetune(size, batch, steps)
    elif mode == "gemm":
        m, k, n, threads, steps = args
        torch.set_num_threads(threads)
        out = gemm(m, k, n, steps)
    elif mode == "attention":
        batch, heads, seq, dim, threads, steps = args
        torch.set_num_threads(threads)
        out = attention(batch, heads, seq, dim, steps)
    else:
        raise SystemExit(f"unknown mode {mode}")
    out.update(versions())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
