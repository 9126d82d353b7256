"""transformer-mt: the original encoder-decoder Transformer for machine translation.

`from transformer_mt import Translator` is the Python API (see `transformer_mt.translator`);
it is imported on first use, so importing the package itself costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Translator"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        from transformer_mt.translator import Translator

        return Translator
    raise AttributeError(f"module 'transformer_mt' has no attribute {name!r}")
