#!/usr/bin/python3
"""Issue 25: an independent PyTorch run of configs/cnn.yaml for one seed, to set regtrain's CNN beside it
seed against seed (test/bench/cnn-seeds.sh runs both sides in alternating rounds).

Independent of regtrain: its own initial weights (Glorot-uniform kernels, zero biases: Keras's
defaults, drawn by torch from --seed), its own shuffling (torch.randperm each epoch), its own data
reading (the IDX files, gzip or not, from --data). What it shares with regtrain is the recipe:
- data: the first 5,000 training images held out for validation, the other 55,000 trained on,
  pixels / 255 as float32;
- model: Conv2d(1,16,3) relu, max_pool 2, Conv2d(16,32,3) relu, max_pool 2, flatten in Keras's
  (NHWC) order, Linear(800,64) relu, Linear(64,10); loss F.cross_entropy on the logits;
- Adam with Keras's formula (epsilon outside the bias correction; beta1 0.9, beta2 0.999,
  epsilon 1e-7) and Keras's CosineDecay from 2e-3 to 0 over 8,600 updates, batch 64 (the last,
  partial batch of an epoch included, as Keras's fit does), 10 epochs, one thread.
Prints one JSON line per epoch (the epoch's mean training loss and accuracy as Keras logs them, the
validation loss and accuracy) and a last line with the test accuracy.
"""
import argparse
import gzip
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(data, stem):
    for name in (stem, stem + '.gz'):
        if os.path.exists(os.path.join(data, name)):
            return os.path.join(data, name)
    raise SystemExit('%s: no %s in %s' % (stem, stem, data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, required=True)
    ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--epochs', type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    def images(stem):
        return torch.tensor(read_idx(find(args.data, stem)).astype(np.float32) / np.float32(255)).view(-1, 1, 28, 28)

    def labels(stem):
        return torch.tensor(read_idx(find(args.data, stem)).astype(np.int64))

    x_all, y_all = images('train-images-idx3-ubyte'), labels('train-labels-idx1-ubyte')
    x_val, y_val, x_train, y_train = x_all[:5000], y_all[:5000], x_all[5000:], y_all[5000:]
    x_test, y_test = images('t10k-images-idx3-ubyte'), labels('t10k-labels-idx1-ubyte')

    shapes = {'c1': (16, 1, 3, 3), 'c2': (32, 16, 3, 3), 'd1': (64, 800), 'd2': (10, 64)}
    params = {}
    for k, shape in shapes.items():
        w = torch.empty(shape)
        torch.nn.init.xavier_uniform_(w)
        params[k + '.w'] = w.requires_grad_()
        params[k + '.b'] = torch.zeros(shape[0], requires_grad=True)
    P = params

    def logits(x):
        h = F.max_pool2d(F.relu(F.conv2d(x, P['c1.w'], P['c1.b'])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, P['c2.w'], P['c2.b'])), 2)
        h = F.relu(F.linear(h.permute(0, 2, 3, 1).flatten(1), P['d1.w'], P['d1.b']))
        return F.linear(h, P['d2.w'], P['d2.b'])

    def evaluate(x, y):
        with torch.no_grad():
            loss, correct = 0.0, 0
            for s in range(0, y.numel(), 1000):
                z = logits(x[s:s + 1000])
                loss += float(F.cross_entropy(z, y[s:s + 1000], reduction='sum'))
                correct += int((z.argmax(1) == y[s:s + 1000]).sum())
            return loss / y.numel(), correct / y.numel()

    lr0, T, B = 0.002, 8600, 64
    b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-7)
    slots = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}
    n, s = y_train.numel(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, B):
            idx = order[start:start + B]
            z = logits(x_train[idx])
            loss = F.cross_entropy(z, y_train[idx])
            for p in params.values():
                p.grad = None
            loss.backward()
            lr = lr0 * 0.5 * (1 + math.cos(math.pi * min(s, T) / T))
            t = s + 1
            alpha = float(np.float32(lr) * np.float32(math.sqrt(1 - b2 ** t)) / (1 - b1 ** t))
            with torch.no_grad():
                for k, p in params.items():
                    m, v = slots[k]
                    m.add_((p.grad - m) * float(1 - b1))
                    v.add_((p.grad * p.grad - v) * float(1 - b2))
                    p.sub_(m * alpha / (v.sqrt() + float(eps)))
            loss_sum += float(loss) * idx.numel()
            correct += int((z.argmax(1) == y_train[idx]).sum())
            s += 1
        val_loss, val_acc = evaluate(x_val, y_val)
        print(json.dumps({'epoch': epoch + 1, 'loss': loss_sum / n, 'accuracy': correct / n,
                          'val_loss': val_loss, 'val_accuracy': val_acc}), flush=True)
    test_loss, test_acc = evaluate(x_test, y_test)
    print(json.dumps({'seed': args.seed, 'torch': torch.__version__, 'test_loss': test_loss, 'test_accuracy': test_acc}),
          flush=True)


if __name__ == '__main__':
    main()
