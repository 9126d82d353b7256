"""The LightningDataModule: read corpora, build the joint vocabulary, batch by tokens."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from transformer_mt.data.batching import EncodedPairs, TokenBucketBatchSampler, collate
from transformer_mt.data.corpus import ParallelText, default_data_dir, read_corpora
from transformer_mt.data.tokenizer import Tokenizer, train_tokenizer
from transformer_mt.errors import UserError
from transformer_mt.textio import read_lines

log = logging.getLogger(__name__)


class TranslationDataModule(L.LightningDataModule):
    """Parallel data for one language pair.

    Args:
        train: training corpora (see `transformer_mt.data.corpus` for the accepted forms).
        valid: validation corpora (loss, perplexity and BLEU during training).
        test: test corpora for `transformer-mt test`.
        predict: a source-language text file to translate with `transformer-mt predict`.
        predict_output: where `predict` writes its translations (default: standard output).
        src_lang: source language code, e.g. ``en``.
        tgt_lang: target language code, e.g. ``de``.
        data_dir: base folder of relative corpus paths; default $TRANSFORMER_MT_DATA or
            ../shared/data.
        vocab_size: size of the joint sentencepiece vocabulary.
        spm_model_type: ``unigram`` or ``bpe``.
        spm_cache_dir: where trained sentencepiece models are cached (by content hash).
        max_tokens: padded tokens per training batch (source or target side, the larger).
        eval_max_tokens: padded tokens per validation/test batch (default: max_tokens).
        max_len: training pairs with more subwords than this on either side are dropped
            (and counted in the log); validation and test pairs are never dropped.
        num_workers: DataLoader worker processes.
        seed: seed of the per-epoch batch shuffling.
    """

    def __init__(
        self,
        train: list[str],
        valid: list[str],
        test: list[str] | None = None,
        predict: str | None = None,
        predict_output: str | None = None,
        src_lang: str = "en",
        tgt_lang: str = "de",
        data_dir: str | None = None,
        vocab_size: int = 8000,
        spm_model_type: str = "unigram",
        spm_cache_dir: str = ".cache/transformer-mt",
        max_tokens: int = 4096,
        eval_max_tokens: int | None = None,
        max_len: int = 256,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        if spm_model_type not in ("unigram", "bpe"):
            raise UserError(f"data.spm_model_type={spm_model_type!r}: use 'unigram' or 'bpe'")
        for name, value in (("vocab_size", vocab_size), ("max_tokens", max_tokens),
                            ("max_len", max_len)):
            if value < 1:
                raise UserError(f"data.{name}={value}: must be a positive integer")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.datasets: dict[str, EncodedPairs] = {}
        self.references: dict[str, list[str]] = {}
        self.sources: dict[str, list[str]] = {}
        self.train_sampler: TokenBucketBatchSampler | None = None

    def _read(self, specs: list[str]) -> ParallelText:
        return read_corpora(specs, self.hparams.src_lang, self.hparams.tgt_lang, self.data_dir)

    @cached_property
    def _train_text(self) -> ParallelText:
        return self._read(self.hparams.train)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The joint vocabulary, trained on both sides of the training data (cached)."""
        text = self._train_text
        return train_tokenizer(
            (line for side in (text.src, text.tgt) for line in side),
            vocab_size=self.hparams.vocab_size,
            cache_dir=self.hparams.spm_cache_dir,
            model_type=self.hparams.spm_model_type,
        )

    @property
    def vocab_size(self) -> int:
        """Linked to the model's `vocab_size` by the CLI."""
        return self.tokenizer.vocab_size

    def _encode(self, text: ParallelText, filter_long: bool, name: str) -> EncodedPairs:
        src = self.tokenizer.encode(text.src)
        tgt = self.tokenizer.encode(text.tgt)
        if filter_long:
            limit = self.hparams.max_len
            keep = [i for i, (s, t) in enumerate(zip(src, tgt, strict=True))
                    if 0 < len(s) <= limit and 0 < len(t) <= limit]
            dropped = len(src) - len(keep)
            if dropped:
                log.warning("%s: dropped %d of %d pairs (empty side or over max_len=%d "
                            "subwords)", name, dropped, len(src), limit)
            src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
            if not keep:
                raise UserError(f"{name}: no training pairs left after filtering")
        return EncodedPairs(src, tgt)

    def setup(self, stage: str) -> None:
        if stage == "fit" and "train" not in self.datasets:
            self.datasets["train"] = self._encode(self._train_text, True, "train")
            del self._train_text  # the raw text is no longer needed
        eval_sets = {"fit": ["valid"], "validate": ["valid"], "test": ["test"]}.get(stage, [])
        for split in eval_sets:
            specs = self.hparams.valid if split == "valid" else self.hparams.test
            if not specs:
                raise UserError(f"data.{split} is empty: give at least one corpus for {stage}")
            if split not in self.datasets:
                text = self._read(specs)
                self.datasets[split] = self._encode(text, False, split)
                self.sources[split], self.references[split] = text.src, text.tgt

        if stage == "predict":
            if not self.hparams.predict:
                raise UserError("predict needs a source file: --data.predict FILE")
            self.sources["predict"] = read_lines(self.hparams.predict)

    def _sampler(self, dataset: EncodedPairs, training: bool) -> TokenBucketBatchSampler:
        trainer = self.trainer
        max_tokens = self.hparams.max_tokens if training else (
            self.hparams.eval_max_tokens or self.hparams.max_tokens)
        return TokenBucketBatchSampler(
            dataset.src_lengths, dataset.tgt_lengths, max_tokens,
            shuffle=training, seed=self.hparams.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )

    def _loader(self, dataset: EncodedPairs, sampler: TokenBucketBatchSampler) -> DataLoader:
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.train_sampler = self._sampler(self.datasets["train"], training=True)
        return self._loader(self.datasets["train"], self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["valid"], self._sampler(self.datasets["valid"], False))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], self._sampler(self.datasets["test"], False))

    def predict_dataloader(self) -> DataLoader:
        """Raw source lines in file order, in chunks; `translate_lines` sorts and batches each
        chunk by tokens, so the output keeps the input's order and line count."""
        return DataLoader(self.sources["predict"], batch_size=256, shuffle=False,
                          collate_fn=list)
