"""Adam (0.9, 0.98, 1e-9) and the inverse-square-root schedule of the paper (§5.3)."""

from __future__ import annotations

import pytest
import torch

from transformer_mt.training.optimizer import inverse_sqrt_lr, make_optimizer


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
