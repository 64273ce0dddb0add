"""A small NumPy deep-learning library for learning how gradient clipping behaves, read in an afternoon.

Layers with hand-written backward passes (`layers`), losses (`losses`), a
`Sequential` whose weights and gradients are one flat float32 buffer each (`model`),
SGD/Adam/Lookahead and learning-rate schedules ([`optim`][gradclip.sandbox.vectorized.optim]), and
[`VTrainer`][gradclip.sandbox.vectorized.trainer.VTrainer] ([`trainer`][gradclip.sandbox.vectorized.trainer]),
which clips with [`gradclip.numpy`][gradclip.numpy]. Run ``python -m gradclip.sandbox.vectorized --help`` for
the command line.
"""

from __future__ import annotations

from gradclip.sandbox.vectorized.layers import LSTM, RNN, Dense, Dropout, Layer, ReLU, Sigmoid, Tanh
from gradclip.sandbox.vectorized.losses import MSE, Loss, SoftmaxCrossEntropy
from gradclip.sandbox.vectorized.model import Sequential, mlp
from gradclip.sandbox.vectorized.optim import SGD, Adam, Constant, CosineWarmup, Lookahead, Optimizer, StepLR
from gradclip.sandbox.vectorized.trainer import Metrics, VTrainer

__all__ = [
    "LSTM",
    "MSE",
    "RNN",
    "SGD",
    "Adam",
    "Constant",
    "CosineWarmup",
    "Dense",
    "Dropout",
    "Layer",
    "Lookahead",
    "Loss",
    "Metrics",
    "Optimizer",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "StepLR",
    "Tanh",
    "VTrainer",
    "mlp",
]
