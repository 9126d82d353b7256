"""The training objective: label-smoothed cross-entropy (§5.4), fused with the output
projection so the logits are never materialised."""

from __future__ import annotations

import torch
from torch import Tensor

# Rows of logits per chunk, as a number of logit elements: on a CPU a chunk should stay in the
# caches (8M floats = 32 MB of the 37k-vocabulary's 3,800-token logits' 560 MB); on a GPU it
# only has to be large enough to keep the matmuls efficient.
CHUNK_ELEMENTS = {"cpu": 2**23, "cuda": 2**27}


class _LinearLabelSmoothedCE(torch.autograd.Function):
    """Output projection + label-smoothed cross-entropy, fused and chunked over rows.

    The unfused loss materialises (tokens x vocabulary) logits, log-probabilities and their
    gradients, about ten passes over half a gigabyte per step for a base model, and on a CPU
    those passes cost as much as the projection's matrix products (docs/benchmarks.md). Here
    each chunk of rows goes from hidden states to its loss and its gradient while it is in the
    cache, and only the gradients of `hidden` and `weight` are kept: they are computed in the
    forward pass (the loss is the end of the graph) and scaled by the incoming gradient in
    backward. The gradient of the smoothed loss w.r.t. the logits is
    softmax(z) - (1 - eps) * onehot(gold) - eps / V.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, target: Tensor, epsilon: float,
                chunk_rows: int, with_grad: bool) -> tuple[Tensor, Tensor]:
        vocab = weight.size(0)
        # Under autocast the matmuls below run in its dtype; the softmax math stays in fp32.
        autocast = torch.is_autocast_enabled(hidden.device.type)
        grad_hidden = torch.empty_like(hidden, dtype=torch.float32) if with_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if with_grad else None
        loss = hidden.new_zeros((), dtype=torch.float32)
        nll = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            h, gold = hidden[rows], target[rows, None]
            logits = (h @ weight.T).float()
            gold_logit = logits.gather(1, gold).squeeze(1)
            mean_logit = logits.mean(dim=-1)
            # log Z = max + log(sum(exp(z - max))), with exp(z - max) written over the logits:
            # no chunk-sized temporaries, and the exponentials are reused for the gradient.
            top = logits.amax(dim=-1, keepdim=True)
            exp_sum = logits.sub_(top).exp_().sum(dim=-1)
            log_z = top.squeeze(1) + exp_sum.log()
            nll_rows = log_z - gold_logit
            nll += nll_rows.sum()
            loss += (1.0 - epsilon) * nll_rows.sum() + epsilon * (log_z - mean_logit).sum()
            if not with_grad:
                continue
            grad = logits.div_(exp_sum[:, None]).sub_(epsilon / vocab)  # softmax - eps / V
            grad.scatter_add_(1, gold, grad.new_full(gold.shape, epsilon - 1.0))
            if autocast:
                grad_hidden[rows] = grad @ weight
                grad_weight += grad.T @ h
            else:
                torch.mm(grad, weight, out=grad_hidden[rows])
                grad_weight.addmm_(grad.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = hidden.dtype, weight.dtype
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((grad_hidden * grad_loss).to(hidden_dtype),
                (grad_weight * grad_loss).to(weight_dtype), None, None, None, None)


def label_smoothed_loss(
    hidden: Tensor, weight: Tensor, target: Tensor, epsilon: float, pad_id: int,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum over non-pad tokens of the label-smoothed loss, the plain NLL, and the token count,
    for logits = hidden @ weight.T (the pre-softmax projection, not materialised).

    hidden: (..., d) decoder outputs; weight: (V, d); target: (...) gold ids. The smoothed
    target puts 1 - epsilon on the gold token and spreads epsilon uniformly over the
    vocabulary: loss = (1 - eps) * (-log p_gold) + eps * mean_v(-log p_v) (§5.4). Pad positions
    are dropped before the projection, so they cost nothing. The softmax is computed in
    float32 whatever the autocast dtype, since log-softmax over 30k+ classes loses too much in
    bf16.
    """
    keep = target.ne(pad_id)
    rows = hidden[keep]
    if chunk_rows is None:
        budget = CHUNK_ELEMENTS.get(hidden.device.type, CHUNK_ELEMENTS["cuda"])
        chunk_rows = max(1, budget // weight.size(0))
    # Decided here, not from ctx.needs_input_grad inside forward: that follows requires_grad
    # alone, so validation (inference_mode, with the embedding Parameter as `weight`) would
    # compute and keep gradients nobody asked for, two more matrix products per chunk.
    with_grad = torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad)
    loss, nll = _LinearLabelSmoothedCE.apply(rows, weight, target[keep], epsilon, chunk_rows,
                                             with_grad)
    return loss, nll, keep.sum()
