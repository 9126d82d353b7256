"""The LightningDataModule: prepared (memory-mapped) corpora, the joint vocabulary, token
batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from transformer_mt.checkpoint import META_KEY, load_checkpoint_dict
from transformer_mt.data.batching import EncodedPairs, TokenBucketBatchSampler, collate
from transformer_mt.data.cache import VocabOptions, prepare_split, prepare_vocabulary
from transformer_mt.data.corpus import default_data_dir, read_corpora
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.errors import UserError
from transformer_mt.textio import read_lines

# What each Lightning stage maps (predict reads its own source file).
_STAGE_SPLITS = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",)}


class ResumableLoader(DataLoader):
    """The training DataLoader: it keeps the batch sampler's epoch in step with the trainer, and
    makes training resumable mid-epoch through Lightning's `_Stateful` protocol.

    Epoch: Lightning calls `set_epoch` on samplers but not on batch samplers, so without this
    every epoch would repeat the first one's order. It is set whenever an epoch's iterator is
    created, before worker processes start fetching indices.
    Resume: Lightning saves `state_dict()` with the fit loop in every checkpoint and, when
    resuming, hands it to `load_state_dict` before creating the first iterator. The state is
    where training stands: the epoch and how many of its batches are done, read from the
    trainer (the loader runs ahead of training by its prefetch, so it cannot count itself);
    a finished epoch is saved as the start of the next one, because Lightning moves on to it
    only after creating that first iterator. The sampler then leaves out the batches already
    trained on, so a resumed run trains on exactly the batches of the uninterrupted one.
    """

    batch_sampler: TokenBucketBatchSampler

    def __init__(self, *args: Any, trainer: L.Trainer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trainer = trainer
        self._resume_epoch: int | None = None

    def __iter__(self) -> Iterator[Any]:
        epoch = self.trainer.fit_loop.epoch_progress.current.processed
        if self._resume_epoch is not None:
            epoch, self._resume_epoch = self._resume_epoch, None
        self.batch_sampler.set_epoch(epoch)
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        progress = self.trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch:
            return {"epoch": self.batch_sampler.epoch + 1, "batches": 0}
        return {"epoch": self.batch_sampler.epoch, "batches": progress.current.processed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_epoch = state["epoch"]
        self.batch_sampler.skip_batches = state["batches"]


class TranslationDataModule(L.LightningDataModule):
    """Parallel data for one language pair.

    The training corpora are prepared once per machine (`data.prepare`: a joint vocabulary
    and memory-mapped token arrays in `cache_dir`); every run and rank then maps them.
    `transformer-mt prepare --config CONFIG` does it ahead of time; otherwise the first
    process that needs it does, and the others wait for it.

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
        spm_sample_sentences: the vocabulary is trained on a random sample of at most this
            many training lines (both languages pooled).
        cache_dir: where prepared data (vocabularies, token arrays) is kept, keyed by the
            corpora and options; share it between runs (and nodes, if on a shared file system).
        tokenizer_from: take the vocabulary from this checkpoint instead of building it from
            `train` (set automatically by validate/test/predict with --ckpt_path, which then
            never read the training data).
        max_tokens: padded tokens per training batch (source or target side, the larger).
        eval_max_tokens: padded tokens per validation/test batch (default: max_tokens).
        max_len: training pairs with more subwords than this on either side are dropped
            (and counted in the log); validation and test pairs are never dropped.
        num_workers: DataLoader worker processes.
        seed: seed of the per-epoch batch shuffling and of the vocabulary sample.
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
        spm_sample_sentences: int = 2_000_000,
        cache_dir: str = ".cache/transformer-mt",
        tokenizer_from: str | None = None,
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
                            ("max_len", max_len), ("spm_sample_sentences", spm_sample_sentences)):
            if value < 1:
                raise UserError(f"data.{name}={value}: must be a positive integer")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.cache_dir = Path(cache_dir)
        self.datasets: dict[str, EncodedPairs] = {}
        self.references: dict[str, list[str]] = {}
        self.sources: dict[str, list[str]] = {}
        self.train_sampler: TokenBucketBatchSampler | None = None

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The joint vocabulary: from `tokenizer_from`'s checkpoint, else prepared (once per
        machine, cached) from the training corpora."""
        hp = self.hparams
        if hp.tokenizer_from:
            meta = load_checkpoint_dict(hp.tokenizer_from)[META_KEY]
            return Tokenizer(bytes(meta["sentencepiece"]))
        options = VocabOptions(vocab_size=hp.vocab_size, model_type=hp.spm_model_type,
                               sample_sentences=hp.spm_sample_sentences, seed=hp.seed)
        return prepare_vocabulary(list(hp.train), hp.src_lang, hp.tgt_lang, self.data_dir,
                                  self.cache_dir, options)

    @property
    def vocab_size(self) -> int:
        """Linked to the model's `vocab_size` by the CLI."""
        return self.tokenizer.vocab_size

    def _specs(self, split: str) -> list[str]:
        return list(getattr(self.hparams, split) or [])

    def split(self, split: str) -> EncodedPairs:
        """A split's memory-mapped token arrays (prepared first if needed)."""
        if split not in self.datasets:
            hp = self.hparams
            specs = self._specs(split)
            if not specs:
                raise UserError(f"data.{split} is empty: give at least one corpus")
            self.datasets[split] = prepare_split(
                split, specs, hp.src_lang, hp.tgt_lang, self.data_dir, self.cache_dir,
                self.tokenizer, hp.max_len if split == "train" else None)
        return self.datasets[split]

    def prepare_data(self) -> None:
        """Lightning calls this once per machine (or node) before `setup`: build what this
        stage maps (validate/test never touch the training data). Other processes of the
        machine wait on the cache's lock meanwhile."""
        stage = self.trainer.state.fn.value if self.trainer and self.trainer.state.fn else "fit"
        for split in _STAGE_SPLITS.get(stage, ()):
            if self._specs(split):
                self.split(split)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            _check_same_vocabulary(self.tokenizer)
        for split in _STAGE_SPLITS.get(stage, ()):
            self.split(split)
            if split != "train" and split not in self.references:
                text = read_corpora(self._specs(split), self.hparams.src_lang,
                                    self.hparams.tgt_lang, self.data_dir)
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

    def _loader_options(self) -> dict[str, Any]:
        """DataLoader options shared by training and evaluation.

        Each loader gets its own seeded generator: a DataLoader otherwise draws a seed from
        torch's global generator every time it starts an epoch, so a validation run or a new
        epoch would shift the dropout masks of all later steps, and a resumed run (which
        restores the global generators from the checkpoint) would drift from an uninterrupted
        one.
        """
        return dict(
            collate_fn=collate, num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        self.train_sampler = self._sampler(self.datasets["train"], training=True)
        return ResumableLoader(self.datasets["train"], batch_sampler=self.train_sampler,
                               trainer=self.trainer, **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["valid"], batch_sampler=self._sampler(
            self.datasets["valid"], False), **self._loader_options())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_sampler=self._sampler(
            self.datasets["test"], False), **self._loader_options())

    def predict_dataloader(self) -> DataLoader:
        """Raw source lines in file order, in chunks; `translate_lines` sorts and batches each
        chunk by tokens, so the output keeps the input's order and line count."""
        return DataLoader(self.sources["predict"], batch_size=256, shuffle=False,
                          collate_fn=list)


def _check_same_vocabulary(tokenizer: Tokenizer) -> None:
    """Under DDP, fail loudly if ranks built different vocabularies.

    One machine's ranks share one cache folder, so they agree; nodes without a shared file
    system each prepare their own, and sentencepiece trained with several threads is not
    bit-reproducible, so their models could differ and the ranks would silently train on
    different token ids.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    digest = hashlib.sha256(tokenizer.model_proto).hexdigest()
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        raise UserError(
            "the ranks built different sentencepiece vocabularies (nodes without a shared "
            "data.cache_dir): run `transformer-mt prepare` once and copy data.cache_dir to "
            "every node, or put it on a shared file system"
        )
