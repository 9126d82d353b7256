"""Label-smoothed loss and the paper's learning-rate schedule (§5.3, §5.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll_loss(
    logits: Tensor, target: Tensor, epsilon: float, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum over non-pad tokens of the label-smoothed loss, the plain NLL, and the token count.

    The smoothed target puts 1 - epsilon on the gold token and spreads epsilon uniformly over
    the vocabulary: loss = (1 - eps) * (-log p_gold) + eps * mean_v(-log p_v). Pad positions
    contribute nothing. Computed in float32 whatever the autocast dtype, since log-softmax
    over 30k+ classes loses too much in bf16.
    """
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(pad_id)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.mean(dim=-1)
    nll = nll.masked_fill(~keep, 0.0).sum()
    smooth = smooth.masked_fill(~keep, 0.0).sum()
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    return loss, nll, keep.sum()


def inverse_sqrt_lr(step: int, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """lrate = factor * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5) (§5.3).

    Rises linearly for `warmup_steps` steps, then decays with the inverse square root of the
    step number. Step numbers start at 1.
    """
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def make_optimizer(
    params, d_model: int, warmup_steps: int, factor: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9, weight_decay: float = 0.0,
    fused: bool = False,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam(0.9, 0.98, 1e-9) with the schedule as a per-step LambdaLR (base lr 1.0).

    LambdaLR calls its function with the number of scheduler steps taken so far (0 before the
    first update), so optimizer step k (1-based) uses inverse_sqrt_lr(k).
    """
    optimizer = torch.optim.Adam(
        params, lr=1.0, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused or None
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: inverse_sqrt_lr(done + 1, d_model, warmup_steps, factor)
    )
    return optimizer, scheduler
