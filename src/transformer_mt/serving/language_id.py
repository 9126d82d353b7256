"""Which language a text is in, for `source: "auto"` and `POST /detect`: py3langid (langid.py's
naive Bayes model over byte n-grams, 4.5 MB, shipped inside its wheel: nothing to download).

Chosen by a measured check (docs/benchmarks.md, "Language identification"): on the 1,000
test2016 sentences and the 1,000 Tatoeba test sentences of each of English and German, it was
right on 99.9 / 96.6 % (en) and 100 / 97.7 % (de), at 0.04 ms a sentence, never wrong with a
confidence over 0.9; lingua-language-detector was less accurate in its low-accuracy mode
(57 % on short English sentences) and took 1.3 GB in its high-accuracy one.

The model loads on first use (0.7 s), in the thread that tokenizes requests, so a server whose
clients never ask for detection never holds it. No web import.
"""

from __future__ import annotations

import threading
from typing import Any

# A text is refused as "not in the model's source language" only when the identifier is at
# least this sure of another language (no test sentence was misidentified above 0.9).
REFUSE_ABOVE = 0.9


class LanguageIdentifier:
    """Thread-safe, lazily loaded py3langid identifier with normalised probabilities."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                from py3langid.langid import MODEL_FILE
                from py3langid.langid import LanguageIdentifier as Model

                self._model = Model.from_model_file(MODEL_FILE, norm_probs=True)
            return self._model

    def rank(self, text: str, top: int = 3) -> list[tuple[str, float]]:
        """The `top` most probable languages (ISO 639 codes) and their probabilities."""
        return [(lang, float(p)) for lang, p in self._loaded().rank(text)[:top]]

    def probability(self, text: str, lang: str) -> tuple[str, float, float]:
        """The most probable language, its probability, and the probability of `lang`."""
        ranked = self._loaded().rank(text)
        best, p_best = ranked[0]
        p_lang = next((float(p) for code, p in ranked if code == lang), 0.0)
        return best, float(p_best), p_lang
