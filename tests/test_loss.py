"""The fused label-smoothed loss against hand computation and against the plain (unfused)
computation, values and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import torch
import torch.nn.functional as F

from transformer_mt.training.loss import label_smoothed_loss


def plain_loss(logits: torch.Tensor, target: torch.Tensor, eps: float, pad_id: int):
    """The textbook computation over materialised logits, which the fused loss replaces."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(pad_id)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[keep].sum()
    smooth = -lprobs.mean(dim=-1)[keep].sum()
    return (1.0 - eps) * nll + eps * smooth, nll, keep.sum()


def test_label_smoothing_matches_hand_computation() -> None:
    hidden = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    target = torch.tensor([[2, 0]])  # second position is padding (pad id 0)
    eps = 0.1
    loss, nll, n = label_smoothed_loss(hidden, torch.eye(4), target, eps, pad_id=0)
    row = [2.0, 0.5, -1.0, 0.0]  # logits = hidden @ I
    log_z = math.log(sum(math.exp(x) for x in row))
    logp = [x - log_z for x in row]
    expected_nll = -logp[2]
    expected = (1 - eps) * expected_nll + eps * (-sum(logp) / 4)
    assert n.item() == 1
    assert nll.item() == pytest.approx(expected_nll, rel=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_padding_contributes_nothing() -> None:
    torch.manual_seed(0)
    hidden, weight = torch.randn(2, 5, 8), torch.randn(11, 8)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = 0
    scrambled = hidden.clone()
    scrambled[1, 3:] = torch.randn(2, 8) * 50
    results = []
    for h in (hidden, scrambled):
        h = h.clone().requires_grad_()
        loss, nll, n = label_smoothed_loss(h, weight, target, 0.1, pad_id=0)
        loss.backward()
        results.append((loss.item(), nll.item(), n.item()))
        assert h.grad[1, 3:].abs().max() == 0 and h.grad[1, :3].abs().max() > 0
    assert results[0][2] == results[1][2] == 8
    assert results[0][:2] == pytest.approx(results[1][:2])


def test_no_smoothing_is_cross_entropy() -> None:
    torch.manual_seed(1)
    hidden, weight, target = torch.randn(3, 4, 6), torch.randn(9, 6), torch.randint(1, 9, (3, 4))
    loss, nll, n = label_smoothed_loss(hidden, weight, target, 0.0, pad_id=0)
    ce = F.cross_entropy((hidden @ weight.T).view(-1, 9), target.view(-1), reduction="sum")
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6) == pytest.approx(nll.item())


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, None])
def test_fused_loss_and_gradients_equal_the_plain_computation(chunk_rows: int | None) -> None:
    """Chunks of 1 row, chunks that do not divide the 12 real tokens, and the default (one
    chunk): the same loss, NLL and gradients as autograd through materialised logits."""
    torch.manual_seed(2)
    hidden, weight = torch.randn(3, 6, 16), torch.randn(50, 16) * 0.5
    target = torch.randint(1, 50, (3, 6))
    target[0, 4:], target[2, 2:] = 0, 0
    fused_h, fused_w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, nll, n = label_smoothed_loss(fused_h, fused_w, target, 0.1, 0, chunk_rows)
    (loss / n).backward()
    plain_h, plain_w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    ref_loss, ref_nll, ref_n = plain_loss(plain_h @ plain_w.T, target, 0.1, 0)
    (ref_loss / ref_n).backward()
    assert n.item() == ref_n.item() == 12
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(nll, ref_nll)
    torch.testing.assert_close(fused_h.grad, plain_h.grad)
    torch.testing.assert_close(fused_w.grad, plain_w.grad)
    assert not nll.requires_grad


def test_fused_loss_without_gradients_and_under_bf16_autocast() -> None:
    """Evaluation (no_grad) gives the exact loss and no graph; bf16 autocast keeps the softmax in
    float32 and lands close to the float32 loss, with float32 gradients."""
    torch.manual_seed(3)
    hidden, weight = torch.randn(4, 5, 32), torch.randn(100, 32) * 0.2
    target = torch.randint(1, 100, (4, 5))
    exact, _, _ = plain_loss(hidden @ weight.T, target, 0.1, 0)
    with torch.no_grad():
        loss, nll, _ = label_smoothed_loss(hidden, weight, target, 0.1, 0, chunk_rows=6)
    torch.testing.assert_close(loss, exact)
    assert not loss.requires_grad
    h = hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, nll, _ = label_smoothed_loss(h, weight, target, 0.1, 0, chunk_rows=6)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(exact.item(), rel=2e-2)
    loss.backward()
    assert h.grad.dtype == torch.float32 and torch.isfinite(h.grad).all()


def _count_matmuls(run: Callable[[], object]) -> int:
    """How many matrix products `run` sends to the kernels, whatever autograd decided (the
    profiler sees them under inference_mode too, where a TorchDispatchMode misses some)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return sum(event.name in ("aten::mm", "aten::addmm", "aten::addmm_")
               for event in prof.events())


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode],
                         ids=["no_grad", "inference_mode"])
def test_evaluation_with_a_parameter_does_no_gradient_work(
    mode: Callable[[], AbstractContextManager],
) -> None:
    """Validation feeds the embedding Parameter (requires_grad) under no_grad/inference_mode:
    only the forward product of each chunk may run, not the two gradient products."""
    torch.manual_seed(4)
    weight = torch.nn.Parameter(torch.randn(50, 16) * 0.2)
    hidden, target = torch.randn(3, 8, 16), torch.randint(1, 50, (3, 8))
    chunks = math.ceil(24 / 5)

    def evaluate() -> None:
        with mode():
            loss, _, _ = label_smoothed_loss(hidden, weight, target, 0.1, 0, chunk_rows=5)
        assert not loss.requires_grad

    assert _count_matmuls(evaluate) == chunks
    # the same call with grad mode on does the gradient work: the count can see it
    assert _count_matmuls(
        lambda: label_smoothed_loss(hidden, weight, target, 0.1, 0, chunk_rows=5)
    ) == 3 * chunks
