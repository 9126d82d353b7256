"""Joint sentencepiece vocabulary: train (cached by content hash), load, encode, decode.

One model for both languages lets the source embedding, target embedding and output projection
share one matrix (paper §3.4). `byte_fallback=True` means no input character becomes <unk>.
The serialized model travels inside every checkpoint, so `translate` needs no other file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from transformer_mt.errors import UserError

# sentencepiece's list calls start a thread pool each time: ~150 us before the first text,
# against ~3 us per text for a single-text call (measured on 2 cores). Below this many texts
# (a server request, a small batch) one call per text is faster; above it the pool wins.
BATCH_CALL_FROM = 128


class Tokenizer:
    """A loaded sentencepiece model with the project's special ids (pad 0, unk 1, bos 2, eos 3)."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(f"sentencepiece model has special ids {ids}, expected (0, 1, 2, 3)")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Subword ids of each text, without BOS/EOS (callers add what they need)."""
        if len(texts) < BATCH_CALL_FROM:
            return [self.sp.encode(text, out_type=int) for text in texts]
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized text; special ids (pad/bos/eos) are dropped."""
        special = {PAD_ID, BOS_ID, EOS_ID}
        kept = [[i for i in seq if i not in special] for seq in ids]
        if len(kept) < BATCH_CALL_FROM:
            return [self.sp.decode(seq) for seq in kept]
        return self.sp.decode(kept)

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    cache_dir: str | os.PathLike,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    max_sentences: int = 2_000_000,
) -> Tokenizer:
    """Train a joint model on `texts` (both languages), or reuse the cached one.

    The cache key hashes the training text and every option, so a changed corpus or vocabulary
    size never silently reuses a stale model. For small in-memory texts (tests, tools); a
    training corpus goes through `data.prepare`, which trains on a bounded sample.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    digest.update(repr((vocab_size, model_type, character_coverage, max_sentences)).encode())
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        sample = Path(tmp) / "text.txt"
        with open(sample, "w", encoding="utf-8") as handle:
            for text in texts:
                text = text.strip()
                if text:
                    handle.write(text + "\n")
                    digest.update(text.encode("utf-8") + b"\n")
        model_path = cache / f"spm-{digest.hexdigest()[:16]}.model"
        if not model_path.exists():
            train_sentencepiece(sample, model_path, vocab_size, model_type,
                                character_coverage, max_sentences)
    return Tokenizer.from_file(model_path)


def train_sentencepiece(
    text_file: Path,
    model_path: Path,
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    max_sentences: int,
    num_threads: int = 1,
) -> None:
    """Train sentencepiece on a one-sentence-per-line file; write `model_path` atomically.

    The training files go to a temporary folder beside `model_path` that is always removed.
    With num_threads=1 the same text gives the same model; `data.prepare` passes all cores.
    """
    with tempfile.TemporaryDirectory(dir=model_path.parent) as tmp:
        prefix = Path(tmp) / "spm"
        _train(
            input=str(text_file),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=True,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=num_threads,
            minloglevel=2,
        )
        os.replace(f"{prefix}.model", model_path)  # atomic: concurrent readers never see half


def _train(**options) -> None:
    """SentencePieceTrainer.train, with its errors (e.g. vocabulary too small or too large for
    the text) turned into a UserError."""
    try:
        spm.SentencePieceTrainer.train(**options)
    except RuntimeError as exc:
        reason = str(exc).split("]")[-1].strip() or str(exc)
        raise UserError(
            f"sentencepiece training failed: {reason} (vocab_size={options['vocab_size']}; "
            "change data.vocab_size)"
        ) from None
