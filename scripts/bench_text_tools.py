"""The measured checks that chose the server's sentence segmenter and language identifier.

Segmenters (`sentencex`, `pysbd`): test2016 sentences joined 3 to a paragraph with a space, as
issue 24 asks; a paragraph is split correctly when the segmenter returns exactly its three
sentences. Reported for the first 300 sentences, for the first 300 that end in . ! or ? (a
sentence without final punctuation cannot be told from the next by anyone), and for all 999,
in English and German, with the time per paragraph.

Language identifiers (`py3langid`, `lingua-language-detector` in its low- and high-accuracy
modes): the share of test2016 and Tatoeba test sentences (1,000 each, English and German)
identified correctly, how many were wrongly identified with a probability over 0.9 (the
server's refusal threshold), the time per sentence and the memory the model takes.

The candidates that were not chosen are not dependencies: `pip install pysbd
lingua-language-detector` first.

  python scripts/bench_text_tools.py segmenters
  python scripts/bench_text_tools.py identifier py3langid   # or lingua-low, lingua-high
"""

from __future__ import annotations

import lzma
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSFORMER_MT_DATA", REPO.parent / "shared" / "data"))


def load(path: Path) -> list[str]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def segmenters() -> None:
    import pysbd
    from sentencex import segment

    for lang in ("en", "de"):
        sentences = load(DATA / "multi30k" / f"test2016.{lang}.xz")
        punctuated = [s for s in sentences if s[-1:] in ".!?"]
        pysbd_segmenter = pysbd.Segmenter(language=lang, clean=False)
        candidates = {
            "sentencex": lambda t, lang=lang: [s.strip() for s in segment(lang, t) if s.strip()],
            "pysbd": lambda t, p=pysbd_segmenter: [x.strip() for x in p.segment(t) if x.strip()],
        }
        for name, pool in (("first 300", sentences[:300]),
                           ("first 300 ending . ! ?", punctuated[:300]),
                           ("all 999", sentences[:999])):
            paragraphs = [pool[i:i + 3] for i in range(0, len(pool) - len(pool) % 3, 3)]
            for tool, split in candidates.items():
                started = time.perf_counter()
                right = sum(split(" ".join(p)) == p for p in paragraphs)
                ms = 1000 * (time.perf_counter() - started) / len(paragraphs)
                print(f"{lang} {name:24s} {tool:10s} {right}/{len(paragraphs)} = "
                      f"{100 * right / len(paragraphs):.1f} %  {ms:.3f} ms/paragraph")


def identifier(which: str) -> None:
    before = rss_mb()
    started = time.perf_counter()
    if which == "py3langid":
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        detect = model.classify
    else:
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_all_languages()
        if which == "lingua-low":
            builder = builder.with_low_accuracy_mode()
        detector = builder.with_preloaded_language_models().build()

        def detect(text: str) -> tuple[str, float]:
            best = detector.compute_language_confidence_values(text)[0]
            return best.language.iso_code_639_1.name.lower(), best.value
    detect("warm up")
    print(f"{which}: loaded in {time.perf_counter() - started:.2f} s, "
          f"RSS +{rss_mb() - before:.0f} MB")
    for lang in ("en", "de"):
        for name, path in (("test2016", DATA / "multi30k" / f"test2016.{lang}.xz"),
                           ("Tatoeba test", REPO / "data" / f"test.{lang}.xz")):
            texts = load(path)[:1000]
            started = time.perf_counter()
            found = [detect(t) for t in texts]
            ms = 1000 * (time.perf_counter() - started) / len(texts)
            right = sum(code == lang for code, _ in found)
            sure_and_wrong = sum(code != lang and p > 0.9 for code, p in found)
            print(f"  {lang} {name:13s} {right}/{len(texts)} = {100 * right / len(texts):.1f} %"
                  f"  {ms:.3f} ms/sentence  wrong with p > 0.9: {sure_and_wrong}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["segmenters"]:
        segmenters()
    elif sys.argv[1:2] == ["identifier"] and len(sys.argv) == 3:
        identifier(sys.argv[2])
    else:
        sys.exit(__doc__)
