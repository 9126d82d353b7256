"""Label-smoothed loss against hand computation, and the inverse-square-root schedule."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_mt.optim import inverse_sqrt_lr, label_smoothed_nll_loss, make_optimizer


def test_label_smoothing_matches_hand_computation() -> None:
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    target = torch.tensor([[2, 0]])  # second position is padding (pad id 0)
    eps = 0.1
    loss, nll, n = label_smoothed_nll_loss(logits, target, eps, pad_id=0)
    row = [2.0, 0.5, -1.0, 0.0]
    log_z = math.log(sum(math.exp(x) for x in row))
    logp = [x - log_z for x in row]
    expected_nll = -logp[2]
    expected = (1 - eps) * expected_nll + eps * (-sum(logp) / 4)
    assert n.item() == 1
    assert nll.item() == pytest.approx(expected_nll, rel=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_padding_contributes_nothing() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = 0
    loss, nll, n = label_smoothed_nll_loss(logits, target, 0.1, pad_id=0)
    scrambled = logits.clone()
    scrambled[1, 3:] = torch.randn(2, 11) * 50
    loss2, nll2, n2 = label_smoothed_nll_loss(scrambled, target, 0.1, pad_id=0)
    assert n.item() == n2.item() == 8
    assert loss.item() == pytest.approx(loss2.item()) and nll.item() == pytest.approx(nll2.item())


def test_no_smoothing_is_cross_entropy() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(3, 4, 9), torch.randint(1, 9, (3, 4))
    loss, nll, n = label_smoothed_nll_loss(logits, target, 0.0, pad_id=0)
    ce = torch.nn.functional.cross_entropy(logits.view(-1, 9), target.view(-1), reduction="sum")
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6) == pytest.approx(nll.item())


@pytest.mark.parametrize("step", [1, 4000, 16000])
def test_schedule_formula(step: int) -> None:
    d_model, warmup = 512, 4000
    expected = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
    assert inverse_sqrt_lr(step, d_model, warmup) == pytest.approx(expected)


def test_optimizer_uses_paper_adam_and_schedule() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer, scheduler = make_optimizer([param], d_model=512, warmup_steps=4000)
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    seen = {}
    for step in range(1, 16001):
        seen[step] = optimizer.param_groups[0]["lr"]  # the lr optimizer step `step` uses
        optimizer.step()
        scheduler.step()
    for step in (1, 4000, 16000):
        assert seen[step] == pytest.approx(inverse_sqrt_lr(step, 512, 4000))
    assert seen[4000] == max(seen.values())  # peak at the end of warm-up
