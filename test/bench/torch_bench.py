#!/usr/bin/env python3
"""PyTorch reference for issue 5: the tutorial MLP trained with SGD, samples/s at several batch sizes.

Model: Flatten(28x28) -> Linear 200 relu (L1 0.01) -> Linear 100 relu (L2 0.001)
       -> Linear 50 relu (L1 0.01 + L2 0.01) -> Linear 10 (softmax inside cross_entropy).
Loss: mean cross-entropy + Keras penalties l1*sum|w| + l2*sum w^2 on the kernels (autograd, as Keras).
Init: Glorot-uniform kernels, zero biases (Keras defaults). SGD lr 0.01 (momentum optional).
Data: random Fashion-MNIST-shaped (N x 28 x 28 in [0,1), labels 0..9), or the real training set
from --data DIR holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz].

Prints one JSON object: {"torch": version, "threads": [...], "rows": [{batch, threads, samplesPerSec}]}.
Usage: python3 test/bench/torch_bench.py [--batches 32,512] [--threads 1,2] [--seconds 1.0] [--repeats 3]

With --serve it stays up for a caller that pairs each of its own measurements with one of PyTorch's
taken right after it: it prints {"torch": version} once, then for each stdin line "BATCH THREADS SECONDS"
measures that long (after a warm-up) and prints {"batch", "threads", "samplesPerSec", "cpuSamplesPerSec"}
(the second per second of the process's CPU time: what a busy machine's time-sharing does not change).
"""
import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time


def set_threads(torch, n):
    """torch.set_num_threads(n), and the same for the OpenBLAS that torch's matmuls call.

    Debian's PyTorch 1.13 calls the system OpenBLAS (pthreads build), which keeps its own thread
    pool: torch.set_num_threads does not reach it, so "1 thread" would still run its large GEMMs on
    every core (seen here: a second thread doing a quarter of a 512x784x200 product's work). The
    library already loaded is found in /proc/self/maps and told directly.
    """
    torch.set_num_threads(n)
    try:
        import ctypes
        with open('/proc/self/maps') as f:
            libs = {line.split()[-1] for line in f if 'libopenblas' in line}
        for lib in libs:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
    except (OSError, AttributeError):
        pass  # no OpenBLAS in this torch (MKL follows set_num_threads by itself)


def measure_rate(torch, run, batch, seconds):
    """One served measurement: run(k) trains k steps; a warm-up sizes k to last about `seconds`."""
    run(3)  # warm-up, and the time of one step to size the measurement
    t0 = time.perf_counter()
    run(2)
    k = max(2, int(seconds / ((time.perf_counter() - t0) / 2)))
    t0 = time.perf_counter()
    c0 = time.process_time()
    run(k)
    rate = k * batch / (time.perf_counter() - t0)
    cpu_rate = k * batch / max(1e-9, time.process_time() - c0)
    return {'batch': batch, 'threads': torch.get_num_threads(), 'samplesPerSec': rate, 'cpuSamplesPerSec': cpu_rate}


def read_idx(path):
    import numpy as np
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_real(d):
    import torch
    def find(stem):
        for name in (stem, stem + '.gz'):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(d, stem))
    x = read_idx(find('train-images-idx3-ubyte')).astype('float32') / 255.0
    y = read_idx(find('train-labels-idx1-ubyte')).astype('int64')
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batches', default='32,512')
    ap.add_argument('--threads', default='1')
    ap.add_argument('--seconds', type=float, default=1.0, help='time per repeat')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--samples', type=int, default=16384)
    ap.add_argument('--momentum', type=float, default=0.0)
    ap.add_argument('--data', default=None)
    ap.add_argument('--serve', action='store_true')
    args = ap.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    if args.data:
        X, Y = load_real(args.data)
    else:
        X = torch.rand(args.samples, 28, 28)
        Y = torch.randint(0, 10, (args.samples,))
    n = X.shape[0]

    def build():
        layers = [nn.Linear(784, 200), nn.Linear(200, 100), nn.Linear(100, 50), nn.Linear(50, 10)]
        for l in layers:
            limit = math.sqrt(6.0 / (l.in_features + l.out_features))
            nn.init.uniform_(l.weight, -limit, limit)
            nn.init.zeros_(l.bias)
        return nn.ModuleList(layers)

    penalties = [(0.01, 0.0), (0.0, 0.001), (0.01, 0.01), (0.0, 0.0)]

    def step(model, opt, xb, yb):
        h = xb.reshape(xb.shape[0], -1)
        for i, l in enumerate(model):
            h = l(h)
            if i < 3:
                h = F.relu(h)
        loss = F.cross_entropy(h, yb)
        for (l1, l2), l in zip(penalties, model):
            if l1:
                loss = loss + l1 * l.weight.abs().sum()
            if l2:
                loss = loss + l2 * l.weight.pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if args.serve:
        serve(torch, build, step, X, Y)
        return

    rows = []
    for threads in [int(t) for t in args.threads.split(',')]:
        set_threads(torch, threads)
        for batch in [int(b) for b in args.batches.split(',')]:
            model = build()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=args.momentum)
            steps_per_epoch = max(1, n // batch)
            pos = 0

            def run(k):
                nonlocal pos
                for _ in range(k):
                    if pos >= steps_per_epoch:
                        pos = 0
                    s = pos * batch
                    step(model, opt, X[s:s + batch], Y[s:s + batch])
                    pos += 1

            run(10)  # warm-up
            t0 = time.perf_counter()
            k = 0
            while time.perf_counter() - t0 < 0.2:
                run(1)
                k += 1
            per_step = (time.perf_counter() - t0) / k
            k = max(2, int(args.seconds / per_step))
            rates = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run(k)
                rates.append(k * batch / (time.perf_counter() - t0))
            rows.append({'batch': batch, 'threads': torch.get_num_threads(), 'samplesPerSec': statistics.median(rates),
                         'steps': k, 'repeats': args.repeats})
    print(json.dumps({'torch': torch.__version__, 'python': sys.version.split()[0],
                      'blas': 'see torch.__config__.show()', 'data': args.data or 'random', 'rows': rows}))


def serve(torch, build, step, X, Y):
    """One measurement per request line; a model per (batch, threads), trained on from call to call."""
    n = X.shape[0]
    state = {}
    print(json.dumps({'torch': torch.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        batch, threads, seconds = line.split()
        batch, threads, seconds = int(batch), int(threads), float(seconds)
        set_threads(torch, threads)
        key = (batch, threads)
        if key not in state:
            model = build()
            state[key] = [model, torch.optim.SGD(model.parameters(), lr=0.01), 0]
        model, opt, pos = state[key]
        steps_per_epoch = max(1, n // batch)

        def run(k):
            nonlocal pos
            for _ in range(k):
                if pos >= steps_per_epoch:
                    pos = 0
                s = pos * batch
                step(model, opt, X[s:s + batch], Y[s:s + batch])
                pos += 1

        row = measure_rate(torch, run, batch, seconds)
        state[key][2] = pos
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main()
