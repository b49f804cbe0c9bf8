#!/usr/bin/env python3
"""PyTorch peer for issue 14: the small CNN of configs/cnn.yaml trained with Adam, samples/s.

Model (NCHW, PyTorch's layout): Conv2d(1, 16, 3) relu -> MaxPool2d(2) -> Conv2d(16, 32, 3) relu
-> MaxPool2d(2) -> flatten (800) -> Linear(800, 64) relu -> Linear(64, 10) (softmax inside
cross_entropy). Glorot-uniform kernels, zero biases (Keras defaults). Adam lr 0.001, eps 1e-7.
Data: random Fashion-MNIST-shaped images in [0, 1), labels 0..9.

With --serve (as test/bench/cnn-bench.ts runs it) it prints {"torch": version} once, then for each
stdin line "BATCH THREADS SECONDS" measures that long after a warm-up and prints
{"batch", "threads", "samplesPerSec", "cpuSamplesPerSec"}. Without it, one measurement per
--batches entry as a JSON object.
"""
import argparse
import json
import sys
import time

from torch_bench import measure_rate, set_threads  # same directory: one thread reaches torch's OpenBLAS too


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batches', default='64')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seconds', type=float, default=2.0)
    ap.add_argument('--samples', type=int, default=2048)
    ap.add_argument('--serve', action='store_true')
    args = ap.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    X = torch.rand(args.samples, 1, 28, 28)
    Y = torch.randint(0, 10, (args.samples,))

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 16, 3)
            self.c2 = nn.Conv2d(16, 32, 3)
            self.d1 = nn.Linear(800, 64)
            self.d2 = nn.Linear(64, 10)
            for m in (self.c1, self.c2, self.d1, self.d2):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = F.max_pool2d(F.relu(self.c2(x)), 2)
            x = F.relu(self.d1(x.flatten(1)))
            return self.d2(x)

    def trainer(batch):
        model = Cnn()
        opt = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
        steps = max(1, X.shape[0] // batch)
        state = {'pos': 0}

        def run(k):
            for _ in range(k):
                s = (state['pos'] % steps) * batch
                loss = F.cross_entropy(model(X[s:s + batch]), Y[s:s + batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state['pos'] += 1
        return run

    def measure(run, batch, seconds):
        return measure_rate(torch, run, batch, seconds)

    if args.serve:
        runs = {}
        print(json.dumps({'torch': torch.__version__}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            batch, threads, seconds = line.split()
            batch, threads = int(batch), int(threads)
            set_threads(torch, threads)
            if batch not in runs:
                runs[batch] = trainer(batch)
            print(json.dumps(measure(runs[batch], batch, float(seconds))), flush=True)
        return

    set_threads(torch, args.threads)
    rows = [measure(trainer(b), b, args.seconds) for b in [int(b) for b in args.batches.split(',')]]
    print(json.dumps({'torch': torch.__version__, 'rows': rows}))


if __name__ == '__main__':
    main()
