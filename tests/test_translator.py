"""The Python API, `Translator`: the same output as the command line, in the shapes it
promises, and no Lightning import on its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transformer_mt import Translator
from transformer_mt.commands import main as cli
from transformer_mt.inference.translator import Scored

SENTENCES = ["the cat sleeps under the big tree", "", "a small red dog runs quickly",
             "der Hund schläft", "Привет, как дела?"]


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


def test_translate_equals_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           tiny_checkpoint: Path, translator: Translator) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    assert cli.main(["translate", "--checkpoint", str(tiny_checkpoint), "--input", str(source),
                     "--beam-size", "3", "--device", "cpu"]) == 0
    expected = capsys.readouterr().out.split("\n")[:-1]
    got = translator.translate(SENTENCES, beam_size=3)
    assert got == expected
    assert got[1] == "" and len(set(got)) >= 4


def test_one_string_in_one_result_out(translator: Translator) -> None:
    batch = translator.translate(SENTENCES)
    assert translator.translate(SENTENCES[0]) == batch[0]
    assert all(translator.translate(s) == b for s, b in zip(SENTENCES, batch, strict=True))


def test_nbest_gives_scored_lists_best_first(translator: Translator) -> None:
    (nbest,) = translator.translate([SENTENCES[0]], beam_size=4, nbest=3)
    assert len(nbest) == 3 and all(isinstance(h, Scored) for h in nbest)
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
    assert nbest[0].text == translator.translate(SENTENCES[0], beam_size=4)
    assert all(h.log_prob <= 0 for h in nbest)
    (best,) = translator.translate([SENTENCES[0]], beam_size=4, scores=True)
    assert best == nbest[:1]


def test_sampling_is_reproducible_with_a_seed(translator: Translator) -> None:
    first = translator.translate(SENTENCES, sampling=True, seed=7, nbest=2)
    assert translator.translate(SENTENCES, sampling=True, seed=7, nbest=2) == first
    assert translator.translate(SENTENCES, sampling=True, seed=8, nbest=2) != first


def test_search_reports_every_text_once_in_input_numbering(translator: Translator) -> None:
    """`on_finished` gets each text's index in the caller's list (blank ones first, then in
    the order the sorted, token-budgeted batches finish them) and its final n-best list."""
    reported = []
    result = translator.search(SENTENCES * 3, batch_tokens=40,
                               on_finished=lambda i, hyps: reported.append((i, hyps)))
    assert sorted(i for i, _ in reported) == list(range(len(SENTENCES) * 3))
    assert [i for i, _ in reported[:3]] == [1, 6, 11]  # the blank lines, at once
    assert all(result.hypotheses[i] == hyps for i, hyps in reported)


@pytest.mark.parametrize("options", [dict(beam_size=0), dict(nbest=5, beam_size=2),
                                     dict(sampling=True, top_p=0.0), dict(batch_tokens=0)])
def test_impossible_options_raise_value_error(translator: Translator, options: dict) -> None:
    with pytest.raises(ValueError):
        translator.translate("the cat", **options)


def test_the_api_and_the_server_never_import_lightning() -> None:
    code = ("import sys, transformer_mt.inference.translator, transformer_mt.commands.serve, "
            "transformer_mt.serving.runner; print('lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
