"""The loss of one optimizer step is the paper's: the gradient is the sum of the per-token loss
gradients over every micro-batch and rank of the step, divided by their total token count,
with gradient accumulation and with DDP; and a bf16-mixed step on CPU trains and resumes."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from tests._tiny_fit import tiny_fit_args
from transformer_mt.commands.main import main
from transformer_mt.data.batching import EncodedPairs, collate
from transformer_mt.training.translation_model import TranslationModel

VOCAB = 40


def micro_batch(n: int, src_len: int, tgt_len: int, seed: int) -> dict[str, torch.Tensor]:
    """n pairs of random ids with ragged lengths (so batches hold different token counts)."""
    rng = np.random.default_rng(seed)
    src = [rng.integers(4, VOCAB, rng.integers(1, src_len + 1)) for _ in range(n)]
    tgt = [rng.integers(4, VOCAB, rng.integers(1, tgt_len + 1)) for _ in range(n)]
    return collate(EncodedPairs.from_lists(src, tgt).batch(range(n)))


def joined(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One batch holding the pairs of both (padded to the longer)."""
    out = {}
    for key in ("src", "tgt_in", "tgt_out"):
        width = max(a[key].shape[1], b[key].shape[1])
        out[key] = torch.cat([torch.nn.functional.pad(x[key], (0, width - x[key].shape[1]))
                              for x in (a, b)])
    return out


# a short batch with few tokens and a long one with many: a mean of per-batch means would
# weigh the few tokens of the first far more than the paper's per-token mean does
BATCHES = [micro_batch(2, 4, 3, seed=1), micro_batch(6, 12, 14, seed=2)]


class GradientRecorder(TranslationModel):
    """Keeps the gradients the optimizer receives (after this project's normalisation), and
    trains on `BATCHES[rank]` under DDP or on all of `BATCHES` in turn otherwise."""

    def __init__(self, record_to: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.record_to = record_to
        self.recorded: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        grads = {n: p.grad.detach().clone() for n, p in self.named_parameters()
                 if p.grad is not None}
        self.recorded.append(grads)
        if self.record_to:
            torch.save(grads, f"{self.record_to}.rank{self.global_rank}")

    def train_dataloader(self) -> DataLoader:
        batches = [BATCHES[self.global_rank]] if self.trainer.world_size > 1 else BATCHES
        return DataLoader(batches, batch_size=None)


def tiny(record_to: str = "") -> GradientRecorder:
    torch.manual_seed(0)
    return GradientRecorder(record_to=record_to, preset="tiny", vocab_size=VOCAB, d_model=32,
                            n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1,
                            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def reference_gradients(model: TranslationModel, batches: list[dict]) -> tuple[dict, dict]:
    """(the paper's gradient: summed loss over both batches / all their tokens,
        the mean of the two batches' per-token means)."""
    def grads_of(loss: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_sum, _, n_tokens = model._loss(joined(*batches))
    paper = grads_of(loss_sum / n_tokens)
    means = [model._loss(b) for b in batches]
    mean_of_means = grads_of(sum(s / n for s, _, n in means) / len(means))
    return paper, mean_of_means


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     use_distributed_sampler=False, **kwargs)


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-7, msg=name)


def far_apart(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(a[n], b[n], rtol=1e-2, atol=1e-6) for n in a)


def test_accumulated_micro_batches_give_the_gradient_of_one_joined_batch() -> None:
    model = tiny()
    paper, mean_of_means = reference_gradients(tiny(), BATCHES)
    assert far_apart(paper, mean_of_means)  # the two normalisations really differ here
    trainer(accumulate_grad_batches=2).fit(model)
    assert len(model.recorded) == 1
    assert_same(model.recorded[0], paper)


def test_two_gloo_ranks_give_the_gradient_of_one_process_on_both(tmp_path: Path) -> None:
    paper, mean_of_means = reference_gradients(tiny(), BATCHES)
    assert far_apart(paper, mean_of_means)
    record = str(tmp_path / "grads")
    trainer(devices=2, strategy="ddp_spawn").fit(tiny(record_to=record))
    for rank in (0, 1):
        assert_same(torch.load(f"{record}.rank{rank}", weights_only=True), paper)


def test_bf16_mixed_step_on_cpu_trains_and_resumes(tmp_path: Path, spm: Path) -> None:
    base = tiny_fit_args(tmp_path, spm, "--trainer.precision", "bf16-mixed",
                         "--checkpoint.every_n_train_steps", "1",
                         "--trainer.val_check_interval", "2")

    def steps(n: int) -> list[str]:
        return ["--trainer.max_steps", str(n)]

    assert main([*base, *steps(2)]) == 0
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == 2
    assert main([*base, *steps(3), "--ckpt_path", "last"]) == 0
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 3
    changed = [k for k, v in resumed["state_dict"].items()
               if not torch.equal(v, first["state_dict"][k])]
    assert changed and all(math.isfinite(float(v.float().abs().sum()))
                           for v in resumed["state_dict"].values())
