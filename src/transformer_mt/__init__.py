"""transformer-mt: the original encoder-decoder Transformer for machine translation.

The library: `model` (the Transformer), `data` (vocabulary, corpora, batches), `training`
(the LightningModule, loss, optimiser, callbacks, averaging), `inference` (loading, search,
`Translator`), `scoring` (sacreBLEU scores, test sets, significance), `serving` (the HTTP
server), `exporters` (Marian, CTranslate2). `commands` is the `transformer-mt` command line;
nothing in the library imports it.

`from transformer_mt import Translator` is the Python API (`inference.translator`); it is
imported on first use, so importing the package itself costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Translator"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        from transformer_mt.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'transformer_mt' has no attribute {name!r}")
