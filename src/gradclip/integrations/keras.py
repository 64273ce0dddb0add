"""Keras 3: an optimizer wrapper that clips with gradclip, skips bad steps, and a callback that logs it.

Keras's own options do not do what their names suggest to a reader of Pascanu et al.: ``clipnorm``
clips each variable on its own, ``global_clipnorm`` has no adaptive threshold, none of them returns
the norm, and a NaN batch still reaches the weights.
[`GradClipOptimizer`][gradclip.integrations.keras.GradClipOptimizer] wraps any Keras optimizer, the way
``keras.optimizers.LossScaleOptimizer`` does: ``apply()`` hands the gradients to one
[`ClipStep`][gradclip.step.ClipStep] (global-norm clipping with a fixed or adaptive threshold, value clipping
or AGC; the skip rule), then calls the inner optimizer only when the step's result is not ``skipped``, so a
non-finite step (or a spike, with ``skip_spikes``) leaves the weights and every optimizer variable (moments,
``iterations``) as they were.
[`GradClipCallback`][gradclip.integrations.keras.GradClipCallback] puts the ``gradclip/...`` fields into
``logs`` (so ``History``, the progress bar and Keras's own loggers see them) and runs a
[`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] whose run directory ``gradclip report`` reads;
its ``gradclip/loss`` is each step's loss, which Keras's ``train_step`` hands to the optimizer's
``scale_loss`` before ``backward()`` (a custom ``train_step`` that does not call it leaves it null).

Backends: the step works on torch tensors, so the wrapper runs on the torch backend
(``KERAS_BACKEND=torch``), where each Keras variable holds a ``torch.nn.Parameter``; JAX and
TensorFlow trace ``apply()`` into a graph and are refused with an error (untested, unsupported).
Keras stores kernels with the output units last (``(in, out)``, ``(kh, kw, in, out)``), torch with
them first: the step is handed output-first views, so AGC's unit-wise norms are taken per output
unit as in the paper, and every clip still writes into Keras's own gradient tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradclip._extras import missing_extra

try:  # first: without torch the torch backend cannot load, and Keras would try TensorFlow instead
    import torch
except ModuleNotFoundError as err:
    missing_extra(err, __name__)

try:
    import keras
except ModuleNotFoundError as err:
    if not (err.name or "").startswith("keras"):
        raise
    raise ImportError(
        "gradclip.integrations.keras needs Keras 3; install it with `pip install 'gradclip[keras]'`"
    ) from err

from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.diagnosis import MonitorConfig
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

__all__ = ["GradClipCallback", "GradClipOptimizer"]


def _check_backend() -> None:
    backend = keras.backend.backend()
    if backend != "torch":
        raise ValueError(
            f"gradclip.integrations.keras needs the torch backend, got KERAS_BACKEND={backend!r}: the "
            "gradclip step clips torch tensors in place; set KERAS_BACKEND=torch before importing keras"
        )


def _output_first(param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A view of ``param`` whose ``.grad`` is a view of ``grad``, both with the output units first."""
    view = param.detach()
    if view.ndim >= 2:  # Keras kernels put the output units last
        view, grad = view.movedim(-1, 0), grad.movedim(-1, 0)
    view.grad = grad  # a view: the step's in-place clip writes into Keras's gradient
    return view


class GradClipOptimizer(keras.optimizers.Optimizer):
    """Wrap a Keras optimizer: clip every step with gradclip, skip non-finite steps.

    Args:
        inner_optimizer: the ``keras.optimizers.Optimizer`` that updates the weights.
        clipper: a float ``max_norm`` (global-norm clipping), or a gradclip clipper:
            ``NormClipper(ZScore())``, ``NormClipper(Percentile())``, ``ValueClipper(c)``,
            ``AGC(f)``.
        skip_nonfinite: skip the update (weights and optimizer variables unchanged) when the
            gradients hold NaN or Inf.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spike steps, or None.
        rate_window: steps over which ``gradclip/clip_rate`` is measured.

    Examples:
        >>> import os
        >>> os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
        'torch'
        >>> import keras, numpy as np, gradclip
        >>> from gradclip.integrations.keras import GradClipCallback, GradClipOptimizer
        >>> inputs = keras.Input(shape=(4,))
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        >>> opt = GradClipOptimizer(keras.optimizers.SGD(0.1), gradclip.NormClipper(gradclip.ZScore()))
        >>> model.compile(optimizer=opt, loss="mse")
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
        >>> _ = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        >>> opt.step.steps
        4
        >>> x[0, 0] = np.nan  # one bad batch: skipped, the weights stay finite
        >>> _ = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        >>> opt.step.skipped_steps, bool(model.layers[-1].kernel.value.isfinite().all())  # a torch tensor
        (1, True)
    """

    built: bool  # keras.optimizers.Optimizer's flag (annotated only: Keras ships no types)

    def __init__(
        self,
        inner_optimizer: keras.optimizers.Optimizer,
        clipper: Any = 1.0,
        *,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        rate_window: int = 100,
        name: str | None = None,
    ) -> None:
        _check_backend()
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"inner_optimizer must be a keras.optimizers.Optimizer, got {type(inner_optimizer).__name__}"
            )
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "inner_optimizer is a LossScaleOptimizer: its gradients are still scaled when gradclip "
                "clips them; wrap the optimizer inside it instead, or train without loss scaling"
            )
        knobs = {k: getattr(inner_optimizer, k) for k in ("clipnorm", "global_clipnorm", "clipvalue")}
        if any(v is not None for v in knobs.values()) or inner_optimizer.loss_scale_factor is not None:
            raise ValueError(
                f"inner_optimizer clips or scales by itself ({ {k: v for k, v in knobs.items() if v} } "
                f"loss_scale_factor={inner_optimizer.loss_scale_factor}); build it without these and let "
                "GradClipOptimizer clip"
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.step = ClipStep(
            clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes, rate_window=rate_window
        )
        self.rate_window = rate_window
        self.monitor: Any = None  # a GradMonitor, set by GradClipCallback (or by hand)
        self._loss: Any = None  # this step's loss, as the trainer handed it to scale_loss

    def build(self, var_list: Sequence[Any]) -> None:
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self) -> list[Any]:
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self) -> Any:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self) -> Any:
        return self.inner_optimizer.iterations

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> None:
        """Clip ``grads`` in place, then update through the inner optimizer unless the step is skipped."""
        if not self.built:
            self.build(trainable_variables if trainable_variables is not None else self._trainable_variables)
            self.built = True
        variables = (
            list(trainable_variables) if trainable_variables is not None else self._trainable_variables
        )
        pairs = [(v, g) for v, g in zip(variables, grads, strict=True) if g is not None]
        views = [_output_first(v.value, g) for v, g in pairs]
        result = self.step.clip_(views)  # the views are not parameters: a skip leaves the grads to us
        loss, self._loss = self._loss, None
        if self.monitor is not None:
            self.monitor.observe(result, loss=loss, lr=float(self.learning_rate))
        if bool(result.skipped):
            return  # nothing moves: weights, moments and iterations stay as they were
        self.inner_optimizer.apply([g for _, g in pairs], [v for v, _ in pairs])

    def scale_loss(self, loss: Any) -> Any:
        """The loss unchanged (loss scaling is refused at construction: the step needs true gradients).

        Keras's ``train_step`` calls this with the step's loss before ``backward()``, so it is kept for
        the monitor's ``gradclip/loss``.
        """
        self._loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        return loss

    def finalize_variable_values(self, var_list: Sequence[Any]) -> None:
        self.inner_optimizer.finalize_variable_values(var_list)

    def state_dict(self) -> dict[str, Any]:
        """The gradclip step's state (adaptive threshold, counters); Keras saves the variables itself."""
        return self.step.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.step.load_state_dict(state_dict)

    def get_config(self) -> dict[str, Any]:
        """What rebuilds this optimizer: the inner optimizer's config, the clipper's and the step's options.

        Any gradclip clipper (``NormClipper`` with ``Fixed``, ``Percentile`` or ``ZScore``,
        ``ValueClipper``, ``AGC``) and ``skip_spikes`` are saved by their constructor arguments; the
        statistics they have gathered are not (they are the clip state: `state_dict`).
        """
        spikes = self.step.spikes
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "clipper": _clipper_config(self.step.clipper),
            "skip_nonfinite": self.step.skip_nonfinite,
            "skip_spikes": None if spikes is None else spikes.state_dict()["config"],
            "rate_window": self.rate_window,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> GradClipOptimizer:
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"), custom_objects)
        config["clipper"] = _clipper_from_config(config.get("clipper"))
        spikes = config.get("skip_spikes")
        config["skip_spikes"] = None if spikes is None else SpikeSkip(**spikes)
        return cls(inner, **config)


_POLICIES = {cls.kind: cls for cls in (Fixed, Percentile, ZScore)}


def _clipper_config(clipper: Any) -> dict[str, Any] | None:
    """A gradclip clipper as its class name and constructor arguments (plain data for a Keras config)."""
    if clipper is None:
        return None
    refuse = None
    if isinstance(clipper, NormClipper):
        policy = clipper.policy
        if type(policy) is not _POLICIES.get(str(getattr(policy, "kind", ""))):
            refuse = f"its policy {policy!r} is not one of gradclip's {sorted(_POLICIES)}"
        elif clipper.process_groups:
            refuse = "process_groups (live process groups) cannot be saved"
        else:
            policy_config = {"kind": policy.kind, "config": dict(policy.config)}
            return {"class": "NormClipper", "policy": policy_config, "norm_type": clipper.norm_type,
                    "eps": clipper.eps, "foreach": clipper.foreach}  # fmt: skip
    elif type(clipper) is ValueClipper:
        return {"class": "ValueClipper", "clip_value": clipper.clip_value, "foreach": clipper.foreach}
    elif type(clipper) is AGC:
        if not clipper._excluded:  # the tensors exclude= named (AGC keeps them, and has no other record)
            return {"class": "AGC", "clip_factor": clipper.clip_factor, "eps": clipper.eps}
        refuse = "AGC(exclude=...) holds tensors, which a config cannot"
    raise NotImplementedError(
        f"GradClipOptimizer with the clipper {clipper!r} cannot be saved in a Keras config: "
        f"{refuse or 'it is not a NormClipper, ValueClipper or AGC'}; save the weights with "
        "model.save_weights() and the clip state with state_dict()"
    )


def _clipper_from_config(config: Any) -> Any:
    """The clipper `_clipper_config` describes (a number or None, as older configs hold, passes as is)."""
    if config is None or isinstance(config, (int, float)):
        return config
    if not isinstance(config, Mapping) or config.get("class") not in ("NormClipper", "ValueClipper", "AGC"):
        raise ValueError(
            f"clipper config must be None, a max_norm or a mapping with class NormClipper, ValueClipper "
            f"or AGC, got {config!r:.100}"
        )
    options = {k: v for k, v in config.items() if k != "class"}
    if config["class"] == "ValueClipper":
        return ValueClipper(**options)
    if config["class"] == "AGC":
        return AGC(**options)
    policy = options.pop("policy", None)
    if not isinstance(policy, Mapping) or policy.get("kind") not in _POLICIES:
        raise ValueError(f"clipper config's policy must name one of {sorted(_POLICIES)}, got {policy!r:.100}")
    return NormClipper(_POLICIES[policy["kind"]](**policy["config"]), **options)


class GradClipCallback(keras.callbacks.Callback):
    """Log the gradclip fields of a [`GradClipOptimizer`][gradclip.integrations.keras.GradClipOptimizer] into
    ``logs``; run a GradMonitor.

    Put it in ``fit(callbacks=[...])``: Keras calls the user's callbacks before ``History``, so the
    fields of the epoch's last step reach ``History.history`` and every logger that reads ``logs``.

    Args:
        log_dir: the run directory of a [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor]
            (``grads.jsonl`` for ``gradclip report``, plus ``sinks``); None: log into ``logs`` only.
        sinks: the monitor's sinks besides JSONL (``'tensorboard'``, ``'csv'``).
        monitor: a ready ``GradMonitor`` instead of ``log_dir``.
        monitor_config: the warning levels of the monitor built for ``log_dir``.

    Examples:
        >>> import os
        >>> os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
        'torch'
        >>> import keras, numpy as np, gradclip
        >>> from gradclip.integrations.keras import GradClipCallback, GradClipOptimizer
        >>> inputs = keras.Input(shape=(4,))
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        >>> opt = GradClipOptimizer(keras.optimizers.SGD(0.1), gradclip.NormClipper(gradclip.ZScore()))
        >>> model.compile(optimizer=opt, loss="mse")
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
        >>> from gradclip.sinks import read_run
        >>> callback = GradClipCallback(log_dir="runs/keras-example", sinks=["jsonl"])
        >>> history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback])
        >>> read_run("runs/keras-example").steps, any(k.startswith("gradclip/") for k in history.history)
        (8, True)
    """

    def __init__(
        self,
        *,
        log_dir: str | Path | None = None,
        sinks: Sequence[str] = ("jsonl", "tensorboard"),
        monitor: Any = None,
        monitor_config: MonitorConfig | None = None,
    ) -> None:
        super().__init__()
        if log_dir is not None and monitor is not None:
            raise ValueError("pass log_dir= or monitor=, not both")
        self.log_dir, self.sinks, self.monitor = log_dir, tuple(sinks), monitor
        self.monitor_config = monitor_config

    def _optimizer(self) -> GradClipOptimizer:
        opt = getattr(self.model, "optimizer", None)
        if not isinstance(opt, GradClipOptimizer):
            raise TypeError(
                f"GradClipCallback needs model.compile(optimizer=GradClipOptimizer(...)), got "
                f"{type(opt).__name__}"
            )
        return opt

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        opt = self._optimizer()
        if self.monitor is None and self.log_dir is not None:
            from gradclip.monitor import GradMonitor

            names = [v.path for v in self.model.trainable_weights]
            # No max_norm: every step's ClipResult carries the threshold it applied.
            self.monitor = GradMonitor(
                names=names, log_dir=self.log_dir, sinks=self.sinks, config=self.monitor_config
            )
        opt.monitor = self.monitor

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(self._optimizer().step.float_metrics())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(self._optimizer().step.float_metrics())

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._optimizer().monitor = None
        if self.monitor is not None and self.log_dir is not None:
            self.monitor.close()  # a monitor passed in is the caller's to close
