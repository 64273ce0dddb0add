"""Throughput of VTrainer against the same MLP in plain PyTorch on CPU, in one run.

Both sides train the same architecture (Dense-ReLU MLP on the digits features) in float32 with the
same batch size, Adam and global-norm clipping at 1.0 every step (``torch.nn.utils.clip_grad_norm_``
on the torch side), over the same shuffled mini-batches. Prints samples/second for each and the
ratio VTrainer / PyTorch (target >= 0.8). Run: ``.venv/bin/python bench/vectorized_bench.py``.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from gradclip.sandbox.data import load_digits
from gradclip.sandbox.vectorized import Adam, VTrainer, mlp


def bench_vectorized(x: np.ndarray, y: np.ndarray, sizes: list[int], batch: int, epochs: int) -> float:
    trainer = VTrainer(mlp(sizes, seed=0), Adam(1e-3), grad_clip_norm=1.0, seed=0)
    trainer.fit(x, y, 1, batch)  # warm-up: allocations, BLAS threads
    start = time.perf_counter()
    trainer.fit(x, y, epochs, batch)
    return epochs * len(x) / (time.perf_counter() - start)


def bench_torch(x: np.ndarray, y: np.ndarray, sizes: list[int], batch: int, epochs: int) -> float:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = np.random.default_rng(0)

    def epoch() -> None:
        order = torch.from_numpy(gen.permutation(len(x)))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()  # VTrainer reads the loss every step too

    epoch()  # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return epochs * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="best of N interleaved runs for each side")
    args = parser.parse_args()
    split = load_digits()
    sizes = [64, *args.hidden, 10]
    ours, ref = 0.0, 0.0
    for _ in range(args.repeats):  # interleaved, best of N: a busy machine slows both sides alike
        ours = max(ours, bench_vectorized(split.x_train, split.y_train, sizes, args.batch_size, args.epochs))
        ref = max(ref, bench_torch(split.x_train, split.y_train, sizes, args.batch_size, args.epochs))
    print(f"MLP {sizes}, batch {args.batch_size}, float32, Adam + clip_grad_norm 1.0, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")  # fmt: skip
    print(f"VTrainer (NumPy): {ours:10.0f} samples/s")
    print(f"PyTorch CPU:      {ref:10.0f} samples/s")
    print(f"ratio VTrainer / PyTorch: {ours / ref:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
