"""Pascanu, Mikolov & Bengio (2013, arXiv:1211.5063) at laptop scale: tasks, RNNs, experiments.

[`tasks`][gradclip.sandbox.recurrent.tasks] generates the pathological long-term-memory problems of §4.1,
`model` is the vanilla tanh RNN (PyTorch) with the paper's initialisations, `numpy_model` the same network in
the NumPy sandbox, `train` one training run, `population` many runs as one batched
computation, `grid` and `experiment` the ``pascanu`` experiment (tasks x lengths x
lrs x seeds, SGD vs SGD-C), `results` its table, figure and summaries, [`cliff`][gradclip.explorer.cliff] the
single-unit cliff of §2.3
(drawn from [`gradclip.explorer.cliff`][gradclip.explorer.cliff]) and `cli` the command line
(``python -m gradclip.sandbox.recurrent pascanu|cliff``). Importing this package imports neither
torch nor matplotlib.
"""

from __future__ import annotations

from gradclip.sandbox.recurrent.tasks import TASKS, Batch, Task, get_task

__all__ = ["TASKS", "Batch", "Task", "get_task"]
