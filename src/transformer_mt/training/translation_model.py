"""The LightningModule: loss, optimiser and schedule, validation loss/perplexity/BLEU, and the
checkpoint contents that make a .ckpt self-contained for `translate`."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.distributed as dist

from transformer_mt.checkpoint import META_KEY
from transformer_mt.config import TransformerConfig
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.errors import UserError
from transformer_mt.model import Transformer
from transformer_mt.training.loss import label_smoothed_loss
from transformer_mt.training.optimizer import make_optimizer

if TYPE_CHECKING:
    from transformer_mt.inference.translator import Translator


class TranslationModel(L.LightningModule):
    """Encoder-decoder Transformer trained as in Vaswani et al. (2017).

    Args:
        preset: ``tiny``, ``base`` or ``big``; the other model arguments override it when set.
        vocab_size: joint vocabulary size (linked from the data module by the CLI).
        d_model: model width.
        n_heads: attention heads.
        d_ff: inner size of the position-wise feed-forward networks.
        n_encoder_layers: encoder layers N.
        n_decoder_layers: decoder layers N.
        dropout: P_drop on residual branches and on embeddings + positions.
        attention_dropout: dropout on attention probabilities.
        activation_dropout: dropout inside the feed-forward networks.
        max_positions: longest sequence the model accepts (sinusoid table size).
        norm_first: pre-norm instead of the paper's post-norm.
        label_smoothing: epsilon_ls of the smoothed cross-entropy.
        lr_factor: multiplies the paper's learning rate d_model^-0.5 * min(...).
        warmup_steps: linear warm-up steps of the inverse-square-root schedule.
        betas: Adam betas.
        eps: Adam epsilon.
        weight_decay: Adam (L2) weight decay; 0 in the paper.
        val_bleu_sentences: how many validation sentences are decoded for BLEU each validation
            (0 = none); the first ones of the validation set.
        val_beam_size: beam size for the validation BLEU (1 = greedy).
        val_length_penalty: GNMT length penalty alpha for the validation BLEU.
        predict_beam_size: beam size of `transformer-mt predict`.
        predict_max_tokens: padded source tokens per decoding batch in `predict`.
        src_lang: source language (set from the data module; stored in checkpoints).
        tgt_lang: target language (set from the data module; stored in checkpoints).
    """

    def __init__(
        self,
        preset: str = "base",
        vocab_size: int = 37000,
        d_model: int | None = None,
        n_heads: int | None = None,
        d_ff: int | None = None,
        n_encoder_layers: int | None = None,
        n_decoder_layers: int | None = None,
        dropout: float | None = None,
        attention_dropout: float | None = None,
        activation_dropout: float | None = None,
        max_positions: int | None = None,
        norm_first: bool | None = None,
        label_smoothing: float = 0.1,
        lr_factor: float = 1.0,
        warmup_steps: int = 4000,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        weight_decay: float = 0.0,
        val_bleu_sentences: int = 500,
        val_beam_size: int = 1,
        val_length_penalty: float = 0.6,
        predict_beam_size: int = 4,
        predict_max_tokens: int = 4096,
        src_lang: str = "en",
        tgt_lang: str = "de",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"model.label_smoothing={label_smoothing}: must be in [0, 1)")
        if warmup_steps < 1:
            raise UserError(f"model.warmup_steps={warmup_steps}: must be >= 1")
        # checked here, not when first used: a bad value would otherwise surface as a
        # traceback from the search, at the first validation or in `predict`
        for name, value, least in (("val_beam_size", val_beam_size, 1),
                                   ("predict_beam_size", predict_beam_size, 1),
                                   ("predict_max_tokens", predict_max_tokens, 1),
                                   ("val_bleu_sentences", val_bleu_sentences, 0)):
            if value < least:
                raise UserError(f"model.{name}={value}: must be >= {least}")
        try:
            self.config = TransformerConfig.preset(
                preset, vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                n_encoder_layers=n_encoder_layers, n_decoder_layers=n_decoder_layers,
                dropout=dropout, attention_dropout=attention_dropout,
                activation_dropout=activation_dropout, max_positions=max_positions,
                norm_first=norm_first,
            )
        except ValueError as exc:
            raise UserError(f"model: {exc}") from None
        self.model = Transformer(self.config)
        self.tokenizer: Tokenizer | None = None
        self._val_sums: torch.Tensor | None = None
        self._step_tokens = torch.zeros(())  # target tokens of the optimizer step so far
        self._val_hyps: list[tuple[int, str]] = []
        self.grad_norm: torch.Tensor | None = None  # of the last logged step
        self.val_bleu_scored = 0  # validation sentences the last validation BLEU scored

    # ---------------------------------------------------------------- setup and checkpoints
    def setup(self, stage: str) -> None:
        """Take the tokenizer from the data module: the checkpoint must carry it."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and self.tokenizer is None:
            self.tokenizer = datamodule.tokenizer
            self.hparams.src_lang = datamodule.hparams.src_lang
            self.hparams.tgt_lang = datamodule.hparams.tgt_lang

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            raise RuntimeError("cannot save a checkpoint without a tokenizer")
        checkpoint[META_KEY] = {
            "model_config": self.config.to_dict(),
            "sentencepiece": self.tokenizer.model_proto,
            "src_lang": self.hparams.src_lang,
            "tgt_lang": self.hparams.tgt_lang,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(META_KEY)
        if meta is None:
            raise UserError("checkpoint has no transformer-mt section: not written by fit")
        if TransformerConfig.from_dict(meta["model_config"]) != self.config:
            raise UserError(
                "the checkpoint's model shape differs from the configured model: use the "
                "config the checkpoint was trained with"
            )
        if self.tokenizer is not None and self.tokenizer.model_proto != meta["sentencepiece"]:
            raise UserError(
                "the checkpoint's sentencepiece vocabulary differs from the one built from "
                "data.train: use the data config the checkpoint was trained with"
            )
        self.tokenizer = Tokenizer(bytes(meta["sentencepiece"]))

    # ---------------------------------------------------------------- training
    def _loss(self, batch: dict[str, torch.Tensor]):
        """(label-smoothed loss sum, NLL sum, target tokens) of a batch, with the output
        projection fused into the loss (optim.label_smoothed_loss)."""
        memory, src_mask = self.model.encode(batch["src"])
        hidden = self.model.decode_hidden(batch["tgt_in"], memory, src_mask)
        return label_smoothed_loss(
            hidden, self.model.output_weight(), batch["tgt_out"], self.hparams.label_smoothing,
            self.config.pad_id,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int
                      ) -> dict[str, torch.Tensor]:
        """Return the loss *summed* over the batch's target tokens (the gradient is divided by
        the step's token count in `on_before_optimizer_step`), with the detached sums that
        `training.reporting.TrainingReport` adds up between its log lines."""
        loss_sum, nll_sum, n_tokens = self._loss(batch)
        self._step_tokens = self._step_tokens + n_tokens.detach()
        nll = nll_sum.detach() / n_tokens
        self.log("train/loss", loss_sum.detach() / n_tokens, prog_bar=True)
        self.log("train/nll", nll)
        self.log("train/ppl", torch.exp(nll))
        self.log("train/tokens", n_tokens.float(), reduce_fx="sum")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True)
        return {"loss": loss_sum, "loss_sum": loss_sum.detach(), "nll_sum": nll_sum.detach(),
                "tokens": n_tokens}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Make the step's gradient the paper's (and fairseq's): the sum of the per-token loss
        gradients over every micro-batch of the step and every rank, divided by their total
        token count, not a mean of per-micro-batch means.

        Each micro-batch returned its loss sum; Lightning divided it by
        accumulate_grad_batches and DDP averaged the gradients over the ranks, so the
        gradients hold sum / (accumulate x world_size). Lightning calls this hook after the
        last micro-batch and before gradient clipping and the optimizer.
        """
        tokens = self._step_tokens.double()
        world_size = self.trainer.world_size
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(tokens)
        scale = (self.trainer.accumulate_grad_batches * world_size
                 / tokens.clamp(min=1.0)).float()
        # one multi-tensor kernel, not one Python call per parameter tensor (what
        # clip_grad_norm_ does too)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, scale)
        self._step_tokens = torch.zeros((), device=self.device)
        # the norm of the step's gradient (before any clipping), on the steps that are logged
        if (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0 and grads:
            self.grad_norm = torch.nn.utils.get_total_norm(grads)
            self.log("train/grad_norm", self.grad_norm)

    def configure_optimizers(self):
        """Adam with the paper's schedule; fused on CPU and CUDA, except where Lightning's
        mixed-precision plugin refuses gradient clipping with a fused optimizer (it assumes a
        fused step unscales fp16 gradients itself, even for bf16, which has no scaler)."""
        trainer = self.trainer
        clips_mixed = bool(trainer.gradient_clip_val) and "mixed" in str(trainer.precision)
        optimizer, scheduler = make_optimizer(
            self.parameters(), self.config.d_model, self.hparams.warmup_steps,
            self.hparams.lr_factor, tuple(self.hparams.betas), self.hparams.eps,
            self.hparams.weight_decay,
            fused=self.device.type in ("cpu", "cuda") and not clips_mixed,
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._val_hyps = []

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()
        self._test_indices: list[int] = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss_sum, nll_sum, n_tokens = self._loss(batch)
        self._val_sums += torch.stack([loss_sum.double(), nll_sum.double(), n_tokens.double()])
        wanted = batch["index"] < self.hparams.val_bleu_sentences
        if wanted.any():
            from transformer_mt.inference.search import generate

            src = batch["src"][wanted]
            hyps = generate(self.model, src, beam_size=self.hparams.val_beam_size,
                            length_penalty=self.hparams.val_length_penalty)
            texts = self.tokenizer.decode([h[0].tokens for h in hyps])
            self._val_hyps.extend(zip(batch["index"][wanted].tolist(), texts, strict=True))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """The loss as validation computes it; the sentences are translated all together at the
        end (`on_test_epoch_end`), as `evaluate --checkpoint` translates a file."""
        loss_sum, nll_sum, n_tokens = self._loss(batch)
        self._val_sums += torch.stack([loss_sum.double(), nll_sum.double(), n_tokens.double()])
        self._test_indices.extend(batch["index"].tolist())

    def _log_eval(self, prefix: str, references: list[str]) -> int:
        """Log the loss, NLL, perplexity and BLEU of the epoch; return how many sentences the
        BLEU scored."""
        sums, hyps = self._val_sums, self._val_hyps
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, hyps)
            hyps = [h for part in gathered for h in part]
        loss_sum, nll_sum, n_tokens = sums.tolist()
        n_tokens = max(n_tokens, 1.0)
        self.log(f"{prefix}/loss", loss_sum / n_tokens, prog_bar=True, rank_zero_only=True)
        self.log(f"{prefix}/nll", nll_sum / n_tokens, rank_zero_only=True)
        self.log(f"{prefix}/ppl", math.exp(min(nll_sum / n_tokens, 50.0)), rank_zero_only=True)
        if hyps:
            from transformer_mt.scoring.metrics import score

            hyps.sort()
            result = score([h for _, h in hyps], [[references[i] for i, _ in hyps]],
                           metrics=("bleu",))
            self.log(f"{prefix}/bleu", result["bleu"]["score"], prog_bar=True,
                     rank_zero_only=True)
        return len(hyps)

    def predict_step(self, batch: list[str], batch_idx: int) -> list[str]:
        """Translate a chunk of raw source lines (one output per line, same order), through
        `Translator`, the code behind `translate`, `evaluate` and `serve`."""
        translator = self._translator()
        search, batch_tokens = translator.predict_settings()
        result = translator.search(batch, search, batch_tokens=batch_tokens)
        return translator.texts([hypotheses[0] for hypotheses in result.hypotheses])

    def _translator(self) -> Translator:
        """This model as a `Translator`, with its predict settings (`model.predict_*`)."""
        from transformer_mt.inference.loaded_model import LoadedModel
        from transformer_mt.inference.translator import Translator

        return Translator(LoadedModel(model=self.model, tokenizer=self.tokenizer,
                                      src_lang=self.hparams.src_lang,
                                      tgt_lang=self.hparams.tgt_lang,
                                      hyper_parameters=dict(self.hparams)))

    def on_validation_epoch_end(self) -> None:
        self.val_bleu_scored = self._log_eval("val", self.trainer.datamodule.references["valid"])

    def val_bleu_description(self) -> str:
        """How the last validation BLEU was measured (`bleu_description`)."""
        return bleu_description(self.hparams.val_beam_size, self.hparams.val_length_penalty,
                                self.hparams.val_bleu_sentences, self.val_bleu_scored,
                                len(self.trainer.datamodule.references["valid"]))

    def on_test_epoch_end(self) -> None:
        """Loss as validation logs it; BLEU and chrF of the whole split, translated with the
        predict settings, logged and printed with their signatures (`training.evaluation`)."""
        from transformer_mt.training.evaluation import TEST_METRICS, score_test_split

        datamodule = self.trainer.datamodule
        self._log_eval("test", datamodule.references["test"])
        scores, report = score_test_split(
            self._translator(), self._test_indices, datamodule.sources["test"],
            datamodule.references["test"],
            show_progress=self.trainer.progress_bar_callback is not None and sys.stderr.isatty())
        for name in TEST_METRICS:
            self.log(f"test/{name}", scores[name]["score"], rank_zero_only=True)
        self.print(report)


def bleu_description(beam: int, length_penalty: float, wanted: int, scored: int, total: int
                     ) -> str:
    """E.g. "greedy, the first 500 of 1,014 sentences": a validation BLEU over a subset with
    greedy search is not comparable with a test score of a whole set with beam search, so the
    logs say which it is. `wanted` sentences were asked for (`val_bleu_sentences`), `scored`
    were decoded (fewer when `limit_val_batches` cuts the validation short), of `total`."""
    search = "greedy" if beam == 1 else f"beam {beam}, length penalty {length_penalty}"
    wanted = min(wanted, total)
    if scored == total:
        return f"{search}, all {total:,} sentences"
    if scored == wanted:
        return f"{search}, the first {wanted:,} of {total:,} sentences"
    return f"{search}, {scored:,} of the first {wanted:,} of {total:,} sentences"
