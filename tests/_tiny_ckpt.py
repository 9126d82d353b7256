"""Tiny random models and a self-contained checkpoint for the decoding and translate tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from transformer_mt.config import EOS_ID, PAD_ID, TransformerConfig
from transformer_mt.data.tokenizer import Tokenizer, train_tokenizer
from transformer_mt.model import Transformer

# Made-up text in the scripts the translate tests feed in, so the tokenizer has real pieces
# for them (byte fallback would cover them anyway).
WORDS = ("the a cat dog house tree runs sleeps eats big small red green blue over under near "
          "far quickly slowly der die das Haus Katze Hund läuft schläft schnell langsam").split()
_EXTRA = ["Привет, как дела? Собака спит.", "你好，世界。猫在睡觉。", "مرحبا بالعالم، القطة نائمة.",
          "🙂 🚀 😀 emoji", "Ünïcödé ß æ ø å"]


def tiny_model(vocab: int = 12, seed: int = 0, max_positions: int = 64) -> Transformer:
    """Random weights, no dropout, in eval mode. The output projection is untied: with tied
    embeddings a random model mostly repeats its last token, so every hypothesis would run to
    the length limit."""
    torch.manual_seed(seed)
    config = TransformerConfig.preset(
        "tiny", vocab_size=vocab, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2,
        n_decoder_layers=2, dropout=0.0, max_positions=max_positions, share_embeddings=False,
    )
    return Transformer(config).eval()


def tiny_tokenizer(cache_dir: Path) -> Tokenizer:
    """A 400-piece BPE sentencepiece model of `WORDS` (byte fallback needs 256 + specials +
    characters), cached in `cache_dir`."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(60)]
    return train_tokenizer(texts + _EXTRA, 400, cache_dir, model_type="bpe")


def save_checkpoint(path: Path, model: Transformer, tokenizer: Tokenizer) -> Path:
    """Write `model` and `tokenizer` in exactly the format `checkpoint.load_for_inference`
    reads."""
    torch.save(
        {
            "state_dict": {"model." + k: v for k, v in model.state_dict().items()},
            "transformer_mt": {
                "model_config": model.config.to_dict(),
                "sentencepiece": tokenizer.model_proto,
                "src_lang": "en",
                "tgt_lang": "de",
            },
        },
        path,
    )
    return path


def make_tiny_checkpoint(path: Path, cache_dir: Path, max_positions: int = 64) -> Path:
    """A self-contained checkpoint of a random tiny Transformer with `tiny_tokenizer`."""
    tokenizer = tiny_tokenizer(cache_dir)
    model = tiny_model(vocab=tokenizer.vocab_size, seed=0, max_positions=max_positions)
    return save_checkpoint(path, model, tokenizer)


def make_src(lengths: list[int], vocab: int, seed: int = 0) -> torch.Tensor:
    """Right-padded batch of random sources, each ending with EOS (`lengths` include it)."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD_ID)
    for row, n in enumerate(lengths):
        src[row, : n - 1] = torch.randint(4, vocab, (n - 1,), generator=gen)
        src[row, n - 1] = EOS_ID
    return src
