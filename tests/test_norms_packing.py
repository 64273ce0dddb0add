"""The packed CPU norm path (many small tensors stacked into one buffer) against float64 references."""

from __future__ import annotations

import pytest
import torch

import gradclip
from gradclip.norms import get_total_norm, norms_and_total, total_norm


def _reference(grads: list[torch.Tensor]) -> tuple[list[float], float]:
    per = [float(torch.linalg.vector_norm(g.double())) for g in grads]
    return per, float(torch.linalg.vector_norm(torch.tensor(per, dtype=torch.float64)))


def _mixed(gen: torch.Generator) -> list[torch.Tensor]:
    """Small tensors of several shapes (packed, 40 of each), small ones not packed (too few of a shape,
    or above the packing size), a few large ones and transposed (non-contiguous) views."""
    packed = [(16,), (4, 4), (3, 5, 2), (), (256,)] * 40
    shapes = packed + [(7,)] * 5 + [(4096,)] * 40 + [(200, 100), (1 << 14,)]
    grads = [torch.randn(s, generator=gen) for s in shapes]
    grads.insert(7, torch.randn(300, 200, generator=gen).t())  # large but not contiguous
    grads.insert(3, torch.randn(8, 6, generator=gen).t())  # small and not contiguous
    return grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["same shape", "mixed"])
def test_packed_norms_match_float64_in_input_order(dtype, layout):
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(64, generator=gen) for _ in range(500)] if layout == "same shape" else _mixed(gen)
    grads = [g.to(dtype) for g in grads]
    per_ref, total_ref = _reference(grads)
    per, total = norms_and_total(grads)
    assert total.dtype == dtype and [n.dtype for n in per] == [dtype] * len(grads)
    reference = torch.tensor(per_ref, dtype=torch.float64)
    torch.testing.assert_close(torch.stack(per).double(), reference, rtol=1e-6, atol=0)
    assert total.item() == pytest.approx(total_ref, rel=1e-6)
    # The total alone (no per-tensor outputs) is the same number.
    alone = total_norm(grads)
    assert alone.shape == () and alone.dtype == dtype
    assert alone.item() == pytest.approx(total_ref, rel=1e-6)
    assert get_total_norm(grads).item() == pytest.approx(total_ref, rel=1e-6)


def test_many_small_tensors_clip_like_torch():
    gen = torch.Generator().manual_seed(1)
    ours = [torch.nn.Parameter(torch.zeros(32)) for _ in range(400)]
    theirs = [torch.nn.Parameter(torch.zeros(32)) for _ in range(400)]
    for a, b in zip(ours, theirs, strict=True):
        a.grad = torch.randn(32, generator=gen)
        b.grad = a.grad.clone()
    n_ours = gradclip.clip_grad_norm_(ours, 1.0)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert n_ours.item() == pytest.approx(n_theirs.item(), rel=1e-6)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)


def test_packed_path_keeps_nonfinite_values():
    grads = [torch.ones(8) for _ in range(100)]
    grads[57][3] = float("nan")
    assert torch.isnan(total_norm(grads))
    grads[57][3] = float("inf")
    assert torch.isinf(total_norm(grads))
    per, total = norms_and_total(grads)
    assert torch.isinf(total) and torch.isinf(per[57]) and per[56].item() == pytest.approx(8**0.5)


def test_mixed_dtypes_are_not_promoted_silently():
    # A float64 tensor among float32 ones makes a float64 total (torch's rule), never a float16 one.
    grads = [torch.ones(8) for _ in range(40)] + [torch.ones(8, dtype=torch.float64)]
    assert total_norm(grads).dtype == torch.float64
    assert total_norm(grads).item() == pytest.approx(328**0.5)
    with pytest.raises(TypeError, match="floating point"):
        total_norm([torch.ones(8) for _ in range(40)] + [torch.ones(8, dtype=torch.int64)])


@pytest.mark.parametrize("layout", ["same shape", "mixed"])
def test_a_steps_per_tensor_norms_read_lazily_match_float64_in_input_order(layout):
    # ClipStep keeps the packed norms as one tensor (NormRows) until they are read.
    gen = torch.Generator().manual_seed(1)
    shapes = [(64,)] * 300 if layout == "same shape" else [(16,), (4, 4), (3, 5, 2), ()] * 40
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    expected, expected_total = _reference([p.grad.clone() for p in params])
    result = gradclip.ClipStep(None).clip_(params)
    assert len(result.tensor_norms) == len(params)
    assert [float(n) for n in result.tensor_norms] == pytest.approx(expected, rel=1e-6)
    assert float(result.tensor_norms[-1]) == pytest.approx(expected[-1], rel=1e-6)
    assert float(result.total_norm) == pytest.approx(expected_total, rel=1e-6)


@pytest.mark.parametrize(
    "grads",
    [
        [torch.zeros(0) for _ in range(40)],  # empty rows: stack works, packing them does not
        [torch.full((8,), 0.5, dtype=torch.bfloat16) for _ in range(40)],  # reduced in float32
        [torch.full((8,), 0.5) for _ in range(39)] + [torch.full((2, 4), 0.5)],  # one other shape
    ],
    ids=["empty", "bfloat16", "one other shape"],
)
def test_layouts_the_packed_path_hands_back_still_give_the_float64_total(grads):
    _, expected = _reference(grads)
    for total in (total_norm(grads), norms_and_total(grads)[1]):
        assert total.dtype == torch.float32
        assert total.item() == pytest.approx(expected, rel=1e-6)
