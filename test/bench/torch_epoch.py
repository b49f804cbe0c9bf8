#!/usr/bin/env python3
"""PyTorch's own epoch loop, the peer of a `regtrain run` epoch (issue 23, goal 1).

The tutorial's model (as torch_bench.py) trained on the first --train images of the training file
through a torch.utils.data.DataLoader (TensorDataset, shuffle=True, batch --batch, no worker
processes), then validated on the first --val images (loss and accuracy, no_grad, one pass), as
configs/article.yaml does with data.trainLimit. Pixels / 255, SGD lr 0.01, --threads threads (the
system OpenBLAS told too: torch_bench.set_threads).

Prints one JSON object: {"torch", "threads", "batch", "epochs": [{"trainSeconds", "seconds"}]}
(seconds: the whole epoch, training + validation).
Usage: python3 test/bench/torch_epoch.py --data DIR [--train 20000] [--val 5000] [--batch 512] [--epochs 4]
"""
import argparse
import json
import math
import os
import time

from torch_bench import read_idx, set_threads  # same directory


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--train', type=int, default=20000)
    ap.add_argument('--val', type=int, default=5000)
    ap.add_argument('--batch', type=int, default=512)
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    set_threads(torch, args.threads)
    torch.manual_seed(1234)

    def load(stem):
        for name in (stem, stem + '.gz'):
            p = os.path.join(args.data, name)
            if os.path.exists(p):
                return read_idx(p)
        raise FileNotFoundError(os.path.join(args.data, stem))

    x = torch.from_numpy(load('train-images-idx3-ubyte').astype('float32') / 255.0)
    y = torch.from_numpy(load('train-labels-idx1-ubyte').astype('int64'))
    loader = DataLoader(TensorDataset(x[:args.train], y[:args.train]), batch_size=args.batch, shuffle=True)
    x_val, y_val = x[:args.val], y[:args.val]

    layers = [nn.Linear(784, 200), nn.Linear(200, 100), nn.Linear(100, 50), nn.Linear(50, 10)]
    for l in layers:
        limit = math.sqrt(6.0 / (l.in_features + l.out_features))
        nn.init.uniform_(l.weight, -limit, limit)
        nn.init.zeros_(l.bias)
    model = nn.ModuleList(layers)
    penalties = [(0.01, 0.0), (0.0, 0.001), (0.01, 0.01), (0.0, 0.0)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def forward(xb):
        h = xb.reshape(xb.shape[0], -1)
        for i, l in enumerate(model):
            h = l(h)
            if i < 3:
                h = F.relu(h)
        return h

    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(forward(xb), yb)
            for (l1, l2), l in zip(penalties, model):
                if l1:
                    loss = loss + l1 * l.weight.abs().sum()
                if l2:
                    loss = loss + l2 * l.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        t1 = time.perf_counter()
        with torch.no_grad():
            out = forward(x_val)
            F.cross_entropy(out, y_val).item()
            (out.argmax(1) == y_val).float().mean().item()
        epochs.append({'trainSeconds': t1 - t0, 'seconds': time.perf_counter() - t0})
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch': args.batch,
                      'epochs': epochs}))


if __name__ == '__main__':
    main()
