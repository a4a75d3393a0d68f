"""Training small MLPs in numpy: weighted softmax / sigmoid cross-entropy, Adam, input dropout, fixed seed.

Everything that draws randomness takes a `numpy.random.Generator`, so a seed reproduces the weights.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from switchyard.classifier.heads import Mlp, sigmoid, softmax


@dataclass(frozen=True, slots=True)
class TrainConfig:
    hidden: tuple[int, ...] = (256,)
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    input_dropout: float = 0.1
    dropout: float = 0.2
    noise: float = 0.0  # gaussian noise on standardised inputs


def _init(sizes: list[int], rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ws, bs = [], []
    for fan_in, fan_out in itertools.pairwise(sizes):
        ws.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        bs.append(np.zeros(fan_out, dtype=np.float32))
    return ws, bs


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    weights: np.ndarray,
    outputs: int,
    config: TrainConfig,
    rng: np.random.Generator,
    binary: bool = False,
    init: Mlp | None = None,
) -> Mlp:
    """`y`: class indices (softmax) or targets in [0, 1] (binary, outputs=1). With `init`, training starts
    from that MLP's weights (fine-tuning; `config.hidden` is then ignored)."""
    n, d = x.shape
    if init is not None:
        ws, bs = [w.copy() for w in init.weights], [b.copy() for b in init.biases]
    else:
        ws, bs = _init([d, *config.hidden, outputs], rng)
    params = ws + bs
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    sample_w = (weights / weights.mean()).astype(np.float32)
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            xb, wb = x[idx], sample_w[idx]
            if config.noise > 0:
                xb = xb + rng.standard_normal(xb.shape).astype(np.float32) * config.noise
            if config.input_dropout > 0:
                xb = xb * (rng.random(xb.shape) > config.input_dropout) / (1 - config.input_dropout)
            # forward, keeping activations
            acts, masks = [xb.astype(np.float32)], []
            h = acts[0]
            for i in range(len(ws)):
                h = h @ ws[i] + bs[i]
                if i < len(ws) - 1:
                    h = np.maximum(h, 0.0)
                    mask = (
                        (rng.random(h.shape) > config.dropout) / (1 - config.dropout)
                        if config.dropout
                        else 1.0
                    )
                    h = h * mask
                    masks.append(mask)
                    acts.append(h)
            if binary:
                grad = (sigmoid(h) - y[idx].reshape(-1, 1)) * wb[:, None]
            else:
                p = softmax(h)
                p[np.arange(len(idx)), y[idx]] -= 1.0
                grad = p * wb[:, None]
            grad = (grad / len(idx)).astype(np.float32)
            gws: list[np.ndarray] = [np.empty(0)] * len(ws)
            gbs: list[np.ndarray] = [np.empty(0)] * len(ws)
            for i in range(len(ws) - 1, -1, -1):
                gws[i] = acts[i].T @ grad + config.weight_decay * ws[i]
                gbs[i] = grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ ws[i].T) * (acts[i] > 0) * masks[i - 1]
            step += 1
            for j, g in enumerate(gws + gbs):
                m[j] = beta1 * m[j] + (1 - beta1) * g
                v[j] = beta2 * v[j] + (1 - beta2) * g * g
                mhat = m[j] / (1 - beta1**step)
                vhat = v[j] / (1 - beta2**step)
                params[j] -= (config.lr * mhat / (np.sqrt(vhat) + eps)).astype(np.float32)
    k = len(ws)
    return Mlp(
        tuple(p.astype(np.float32) for p in params[:k]), tuple(p.astype(np.float32) for p in params[k:])
    )


def average_of(mlps: list[Mlp]) -> Mlp:
    """One-hidden-layer MLPs whose logits are averaged, folded into a single wider MLP (exactly equal)."""
    if any(len(m.weights) != 2 for m in mlps):
        raise ValueError("only one-hidden-layer MLPs can be folded")
    k = len(mlps)
    w0 = np.concatenate([m.weights[0] for m in mlps], axis=1)
    b0 = np.concatenate([m.biases[0] for m in mlps])
    w1 = np.concatenate([m.weights[1] for m in mlps], axis=0) / k
    b1 = np.mean([m.biases[1] for m in mlps], axis=0)
    return Mlp((w0, w1.astype(np.float32)), (b0, b1.astype(np.float32)))
