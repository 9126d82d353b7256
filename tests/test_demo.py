"""`make demo` end to end at a reduced step count, and the demo corpus it trains on."""

from __future__ import annotations

import importlib.util
import lzma
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

# This test's run (DEMO_STEPS steps, average of steps 225 and 300, beam 4, the first 200 test
# sentences) scored BLEU 24.43 on 2026-11-29; the same run's model scored validation BLEU 7.1
# (greedy) at step 150 and 2.2 at step 75. The floor, half of 24.43, leaves room for another
# CPU's rounding and run-to-run noise, while a broken pipeline or a model that learnt half as
# much stays below it.
DEMO_STEPS, DEMO_TEST_LINES, BLEU_FLOOR = 300, 200, 12.0


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_split(split: str, lang: str) -> list[str]:
    with lzma.open(REPO / "data" / f"{split}.{lang}.xz", "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_held_out_sentences_never_occur_in_training() -> None:
    key = load_script("split_tatoeba").key
    train = {lang: {key(s) for s in read_split("train", lang)} for lang in ("en", "de")}
    held = {lang: [key(s) for s in read_split("valid", lang) + read_split("test", lang)]
            for lang in ("en", "de")}
    assert len(held["en"]) == 1500 and len(train["en"]) > 30_000
    for lang in ("en", "de"):
        assert not train[lang] & set(held[lang]), f"a held-out {lang} sentence is in train"
    assert len(set(held["en"])) == len(held["en"])  # valid and test are disjoint, no repeats
    everyday = {key(s) for s in load_script("demo").EVERYDAY}
    assert not everyday & (train["en"] | set(held["en"]))


def test_split_reproduces_the_shipped_files(tmp_path: Path, shared_data: Path) -> None:
    export = shared_data / "train_extra" / "tatoeba_deu"
    if not Path(f"{export}.en.xz").is_file():
        pytest.skip(f"the Tatoeba export is not at {export}.en.xz")
    assert load_script("split_tatoeba").main(["--export", str(export),
                                              "--out", str(tmp_path)]) == 0
    for path in sorted((REPO / "data").glob("*.xz")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_demo_pipeline_reaches_its_bleu_floor(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the spm cache and any stray output land in the tmp dir
    run_dir = tmp_path / "run"
    assert load_script("demo").main([
        "--run-dir", str(run_dir), "--steps", str(DEMO_STEPS), "--samples", "2",
        "--test-lines", str(DEMO_TEST_LINES), "--no-progress-bar",
    ]) == 0
    out = capsys.readouterr().out
    hypotheses = (run_dir / "test.hyp.de").read_text(encoding="utf-8").split("\n")
    assert len(hypotheses) == DEMO_TEST_LINES + 1 and hypotheses[-1] == ""
    assert (run_dir / "averaged.ckpt").is_file()
    assert f"Training curves (loss, validation BLEU, learning rate): {run_dir / 'curves.png'}" \
        in out and (run_dir / "curves.png").stat().st_size > 10_000
    bleu = re.search(r"^BLEU = (\d+\.\d+) ", out, re.MULTILINE)
    assert bleu, out[-3000:]
    with capsys.disabled():  # shown with pytest -s, to re-measure the floor
        print(f"\ndemo BLEU after {DEMO_STEPS} steps: {bleu.group(1)}")
    assert float(bleu.group(1)) >= BLEU_FLOOR, out[-3000:]
    assert re.search(r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:", out)
    assert out.count("  EN  ") == 2 + 6  # test samples, then the everyday sentences
    assert "$ transformer-mt average --run-dir" in out
    assert f"transformer-mt serve --checkpoint {run_dir / 'averaged.ckpt'}" in out
