#!/usr/bin/python3
"""Issue 25: configs/cnn.yaml's training step in PyTorch, step for step, from regtrain's weights and batches.

Reads the directory `node dist/test/bench/cnn-steps.js --dump DIR` writes (initial weights in Keras's
layout, the batches, the optimizer spec) and prints JSON: for each step the learning rate, the loss, each
layer's output, each gradient and each variable after the update, summarised as cnn-steps.ts does, every
tensor in Keras's layout (kernels h x w x in x out and in x out; activations NHWC), so the two sides
compare directly (test/cnn.parity.test.ts).

Written from the formulas, not from regtrain's code:
- model: Conv2d(1,16,3) relu, max_pool 2, Conv2d(16,32,3) relu, max_pool 2, flatten in Keras's order
  (NHWC: the activation is permuted before flattening), Linear(800,64) relu, Linear(64,10);
- loss: F.cross_entropy on the logits (log-softmax), mean over the batch, as TF-Keras computes it;
- learning rate: Keras's CosineDecay, lr0 * 0.5 * (1 + cos(pi * min(t, T) / T)), t the 0-based update count;
- Adam with Keras's formula (epsilon outside the bias correction), float32 throughout:
  m <- m + (g - m)(1 - b1); v <- v + (g^2 - v)(1 - b2); alpha = lr sqrt(1 - b2^t)/(1 - b1^t);
  w <- w - alpha m/(sqrt(v) + eps). With --torch-adam it uses torch.optim.Adam instead (epsilon inside:
  w <- w - lr/(1 - b1^t) m/(sqrt(v/(1 - b2^t)) + eps)).
--float64 runs the same steps in double precision (the fixture of test/cnn.parity.test.ts).
--train, on a directory from `cnn-steps.js --dump-run`, trains the whole run on regtrain's initial
weights, training split and per-epoch batch order, printing each epoch's mean loss and accuracy.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

POINTS = 8


def g10(v):
    return float('%.10g' % v)


def summarise(t):
    x = t.detach().double().flatten()
    n = x.numel()
    at = [g10(t.detach().flatten()[int(((k + 0.5) * n) // POINTS)]) for k in range(POINTS)]
    return {'at': at, 'sum': g10(x.sum()), 'sumSq': g10((x * x).sum()), 'maxAbs': g10(x.abs().max())}


def to_keras(_name, t):
    """A PyTorch parameter or gradient in Keras's layout."""
    if t.dim() == 4:  # out, in, h, w -> h, w, in, out
        return t.permute(2, 3, 1, 0)
    if t.dim() == 2:  # out, in -> in, out
        return t.t()
    return t


def from_keras(a):
    if a.ndim == 4:
        return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
    if a.ndim == 2:
        return np.ascontiguousarray(a.T)
    return a


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    torch_adam = '--torch-adam' in sys.argv
    # --float64: the same steps in double precision, to tell float32 rounding from a difference in the math.
    dtype = torch.float64 if '--float64' in sys.argv else torch.float32
    d = args[0]
    meta = json.load(open(os.path.join(d, 'meta.json')))
    torch.set_num_threads(1)
    flat = np.fromfile(os.path.join(d, 'weights.f32'), dtype='<f4')
    params = {}
    at = 0
    for v in meta['variables']:
        n = int(np.prod(v['shape']))
        params[v['path']] = torch.tensor(from_keras(flat[at:at + n].reshape(v['shape'])), dtype=dtype, requires_grad=True)
        at += n
    initial = {k: summarise(to_keras(k, p)) for k, p in params.items()}
    images = torch.tensor(np.fromfile(os.path.join(d, 'images.f32'), dtype='<f4').reshape(-1, 1, 28, 28), dtype=dtype)
    labels = torch.tensor(np.fromfile(os.path.join(d, 'labels.i32'), dtype='<i4').astype(np.int64))
    P = lambda k: params[k]  # noqa: E731
    names = meta['layers']  # reshape, conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, flatten, dense, dense_1

    def forward(x, acts):
        nhwc = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
        acts[names[0]] = nhwc(x)
        h = F.relu(F.conv2d(x, P('conv2d/kernel'), P('conv2d/bias')))
        acts[names[1]] = nhwc(h)
        h = F.max_pool2d(h, 2)
        acts[names[2]] = nhwc(h)
        h = F.relu(F.conv2d(h, P('conv2d_1/kernel'), P('conv2d_1/bias')))
        acts[names[3]] = nhwc(h)
        h = F.max_pool2d(h, 2)
        acts[names[4]] = nhwc(h)
        h = nhwc(h).flatten(1)
        acts[names[5]] = h
        h = F.relu(F.linear(h, P('dense/kernel'), P('dense/bias')))
        acts[names[6]] = h
        z = F.linear(h, P('dense_1/kernel'), P('dense_1/bias'))
        acts[names[7]] = F.softmax(z, dim=1)
        return z

    adam = meta['optimizer']['adam']
    sched = adam['learningRate']['cosineDecay']
    lr0, T = sched['initialLearningRate'], sched['decaySteps']
    b1, b2, eps = np.float32(adam['beta1']), np.float32(adam['beta2']), np.float32(adam['epsilon'])
    slots = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}
    opt = torch.optim.Adam(params.values(), lr=lr0, betas=(float(b1), float(b2)), eps=float(eps)) if torch_adam else None
    B = meta['batch']

    def step(x, y, s, acts):
        """One update at 0-based step s; returns the batch's mean loss and correct count."""
        z = forward(x, acts)
        loss = F.cross_entropy(z, y)
        for p in params.values():
            p.grad = None
        loss.backward()
        lr = lr0 * 0.5 * (1 + math.cos(math.pi * min(s, T) / T))
        with torch.no_grad():
            if opt:
                for g in opt.param_groups:
                    g['lr'] = lr
                opt.step()
            else:
                t = s + 1
                alpha = np.float32(np.float32(np.float32(lr) * np.float32(math.sqrt(np.float32(1) - b2 ** t))) / (np.float32(1) - b1 ** t))
                for k, p in params.items():
                    m, v = slots[k]
                    g = p.grad
                    m.add_((g - m) * float(np.float32(1) - b1))
                    v.add_((g * g - v) * float(np.float32(1) - b2))
                    p.sub_(m * float(alpha) / (v.sqrt() + float(eps)))
        return lr, float(loss), int((z.argmax(1) == y).sum())

    if '--train' in sys.argv:
        # The whole run on regtrain's batches (cnn-steps.js --dump-run): each epoch's mean loss and accuracy, as Keras logs them.
        n = labels.numel()
        orders = torch.tensor(np.fromfile(os.path.join(d, 'orders.i32'), dtype='<i4').astype(np.int64)).view(meta['epochs'], n)
        s = 0
        for epoch in range(meta['epochs']):
            loss_sum, correct = 0.0, 0
            for start in range(0, n, B):
                idx = orders[epoch, start:start + B]
                _, loss, ok = step(images[idx], labels[idx], s, {})
                loss_sum += loss * idx.numel()
                correct += ok
                s += 1
            print(json.dumps({'epoch': epoch + 1, 'loss': loss_sum / n, 'accuracy': correct / n}), flush=True)
        return

    steps = []
    for s in range(meta['steps']):
        x, y = images[s * B:(s + 1) * B], labels[s * B:(s + 1) * B]
        acts = {}
        lr, loss, _ = step(x, y, s, acts)
        steps.append({
            'lr': lr,
            'loss': loss,
            'activations': {k: summarise(a) for k, a in acts.items()},
            'gradients': {k: summarise(to_keras(k, p.grad)) for k, p in params.items()},
            'weights': {k: summarise(to_keras(k, p)) for k, p in params.items()},
        })
    print(json.dumps({
        'about': 'PyTorch %s, test/bench/torch_cnn_steps.py %s: configs/cnn.yaml, %d steps of batch %d from regtrain\'s initial weights (seed %s)'
                 % (torch.__version__, ' '.join(sys.argv[2:]) or '(float32)', meta['steps'], B, meta['seed']),
        'initial': initial,
        'steps': steps,
    }))


if __name__ == '__main__':
    main()
