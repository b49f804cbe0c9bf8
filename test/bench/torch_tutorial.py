#!/usr/bin/env python3
"""PyTorch peer of `regtrain run configs/article.yaml`, end to end: the Keras tutorial's model trained
the tutorial's way, timed from start to finish.

Model: Flatten(28x28) -> Linear 200 relu (L1 0.01) -> Linear 100 relu (L2 0.001)
       -> Linear 50 relu (L1 0.01 + L2 0.01) -> Linear 10 (softmax inside cross_entropy);
Glorot-uniform kernels, zero biases; SGD lr 0.01; batch 32; the 60,000 training images shuffled every
epoch; after each epoch, loss and accuracy on the first 5,000 training images (the tutorial's
validation data); at the end, accuracy on the 10,000 test images. Pixels / 255.

Data: --data DIR with the four Fashion-MNIST IDX files (plain or .gz).
Prints one JSON object: {"torch", "threads", "epochs", "seconds", "epochSeconds", "valAccuracy", "testAccuracy"}.
Usage: python3 test/bench/torch_tutorial.py --data DIR [--epochs 60] [--threads 1]
"""
import argparse
import json
import math
import time

from torch_bench import read_idx, set_threads  # same directory


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--epochs', type=int, default=60)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--batch', type=int, default=32)
    args = ap.parse_args()

    import os
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    t_start = time.perf_counter()
    set_threads(torch, args.threads)
    torch.manual_seed(1234)

    def load(stem):
        for name in (stem, stem + '.gz'):
            p = os.path.join(args.data, name)
            if os.path.exists(p):
                return read_idx(p)
        raise FileNotFoundError(os.path.join(args.data, stem))

    x_train = torch.from_numpy(load('train-images-idx3-ubyte').astype('float32') / 255.0)
    y_train = torch.from_numpy(load('train-labels-idx1-ubyte').astype('int64'))
    x_test = torch.from_numpy(load('t10k-images-idx3-ubyte').astype('float32') / 255.0)
    y_test = torch.from_numpy(load('t10k-labels-idx1-ubyte').astype('int64'))
    x_val, y_val = x_train[:5000], y_train[:5000]

    layers = [nn.Linear(784, 200), nn.Linear(200, 100), nn.Linear(100, 50), nn.Linear(50, 10)]
    for l in layers:
        limit = math.sqrt(6.0 / (l.in_features + l.out_features))
        nn.init.uniform_(l.weight, -limit, limit)
        nn.init.zeros_(l.bias)
    model = nn.ModuleList(layers)
    penalties = [(0.01, 0.0), (0.0, 0.001), (0.01, 0.01), (0.0, 0.0)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def forward(x):
        h = x.reshape(x.shape[0], -1)
        for i, l in enumerate(model):
            h = l(h)
            if i < 3:
                h = F.relu(h)
        return h

    def accuracy(x, y):
        with torch.no_grad():
            return (forward(x).argmax(1) == y).float().mean().item()

    n = x_train.shape[0]
    epoch_seconds = []
    val_acc = None
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for s in range(0, n, args.batch):
            idx = perm[s:s + args.batch]
            loss = F.cross_entropy(forward(x_train[idx]), y_train[idx])
            for (l1, l2), l in zip(penalties, model):
                if l1:
                    loss = loss + l1 * l.weight.abs().sum()
                if l2:
                    loss = loss + l2 * l.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_acc = accuracy(x_val, y_val)
        epoch_seconds.append(time.perf_counter() - t0)
    test_acc = accuracy(x_test, y_test)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'epochs': args.epochs,
                      'seconds': time.perf_counter() - t_start, 'epochSeconds': epoch_seconds,
                      'valAccuracy': val_acc, 'testAccuracy': test_acc}))


if __name__ == '__main__':
    main()
