"""Packaging promises: the public API, and `import gradclip` without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gradclip


def test_all_names_resolve():
    for name in gradclip.__all__:
        assert getattr(gradclip, name) is not None, name


def test_numpy_api_works_without_torch_and_torch_api_says_what_to_install():
    # A meta-path finder that refuses torch stands in for an environment without it.
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("No module named 'torch'", name="torch")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        import gradclip, gradclip.numpy, gradclip.sandbox.data
        g = [np.array([3.0, 4.0])]
        assert gradclip.numpy.clip_grad_norm_(g, 1.0) == 5.0
        assert "torch" not in sys.modules
        try:
            gradclip.clip_grad_norm_
        except ImportError as err:
            assert "gradclip[torch]" in str(err), err
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_clip_result_is_one_class_generic_over_norms_and_flags():
    import typing

    import numpy as np

    import gradclip.numpy as gnp
    from gradclip.result import _FIELDS, ClipResult

    assert ClipResult._fields == _FIELDS  # Python 3.10 builds the class from _FIELDS (no generic NamedTuple)
    stats = gnp.clip_grad_norm_([np.array([3.0, 4.0])], 1.0, return_stats=True)
    assert type(stats) is ClipResult and isinstance(stats, gnp.ClipStats)  # the alias is the class itself
    assert (stats.total_norm, stats.clipped) == (5.0, True)
    assert typing.get_origin(ClipResult[float, bool]) is ClipResult  # the annotations' form works at run time


def test_the_torch_entry_points_do_not_import_dynamo_or_dtensor():
    # torch._dynamo (and DTensor, which it imports) cost seconds to import: importing gradclip's
    # modules and clipping must not pull them in (torch's own optimizers do, on construction).
    code = (
        "import sys, torch, gradclip\n"
        "from gradclip import ClipStep, ClipOptimizer, clip_grad_norm_\n"
        "import gradclip.step, gradclip.optim, gradclip.clippers, gradclip.monitor\n"
        "w = torch.nn.Parameter(torch.ones(3)); w.grad = torch.ones(3)\n"
        "ClipStep(1.0).clip_([w]); clip_grad_norm_([w], 1.0)\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch.distributed.tensor') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
