"""Model hyper-parameters as one dataclass, with the paper's presets.

Keeping every architectural knob in a single plain dataclass lets a checkpoint store the
model's shape as a dict (no pickled classes) and lets LightningCLI expose each knob.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Shape of the encoder-decoder Transformer (Vaswani et al., 2017, Table 3)."""

    vocab_size: int = 37000
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1  # P_drop: residual branches and embeddings + positions
    attention_dropout: float = 0.0  # on attention probabilities (not in the paper)
    activation_dropout: float = 0.0  # inside the FFN (not in the paper)
    max_positions: int = 1024  # rows of the sinusoidal table
    norm_first: bool = False  # False = post-norm, as in the paper
    share_embeddings: bool = True  # one matrix: source, target and pre-softmax projection
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TransformerConfig:
        """A named preset (`tiny`, `base`, `big`) with optional overrides (None = keep)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, TransformerConfig] = {
    # Small enough for CPU tests and the demo; same code path as the paper's models.
    "tiny": TransformerConfig(
        vocab_size=8000, d_model=128, n_heads=4, d_ff=512, n_encoder_layers=2,
        n_decoder_layers=2, dropout=0.1, max_positions=512,
    ),
    "base": TransformerConfig(),
    # The paper's big model uses P_drop = 0.3 for en-de.
    "big": TransformerConfig(d_model=1024, n_heads=16, d_ff=4096, dropout=0.3),
}
