"""Standard test sets by name (`scoring.testsets`, `evaluate --testset`), offline.

A sacreBLEU cache folder is filled from ../shared/data's newstest2014 in sacreBLEU's own layout
(tests/_sacrebleu_cache.py): `wmt14/full` with the real 3,003 sentences; `wmt14` (officially
the filtered 2,737, which shared/data does not hold) with the first 40 as a stand-in; `wmt22`
with an XML file in the WMT21+ format holding two translators' references. `evaluate` runs as
a subprocess with `SACREBLEU` pointing there, as a user runs it (sacreBLEU reads the variable
once, when imported), and with every download bound to fail at once, network or not.
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from tests._sacrebleu_cache import fill_sgml, fill_xml, offline_env
from tests.conftest import REPO
from transformer_mt.commands.main import main
from transformer_mt.inference.translator import Translator
from transformer_mt.scoring.metrics import score

STAND_IN = 40  # sentences of the `wmt14` stand-in


def read_xz(path: Path) -> list[str]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


@pytest.fixture(scope="module")
def newstest2014(shared_data: Path) -> tuple[list[str], list[str]]:
    return (read_xz(shared_data / "wmt14" / "newstest2014.en.xz"),
            read_xz(shared_data / "wmt14" / "newstest2014.de.xz"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, newstest2014) -> Path:
    src, ref = newstest2014
    folder = tmp_path_factory.mktemp("sacrebleu")
    fill_sgml(folder, "wmt14/full", "en-de", src, ref)
    fill_sgml(folder, "wmt14", "en-de", src[:STAND_IN], ref[:STAND_IN])
    fill_xml(folder, "wmt22", "en-de", src[:30], {"A": ref[:30], "B": ref[30:60]})
    return folder


def evaluate(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transformer_mt.commands.main", "evaluate",
                           *args], cwd=REPO, env=offline_env(cache), capture_output=True,
                          text=True, timeout=300)


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def test_wmt14_full_scores_as_sacrebleu_does(cache: Path, newstest2014, tmp_path: Path) -> None:
    """The references come from the cache, and the score is the one sacreBLEU's own command
    line gives for `-t wmt14/full -l en-de` on the same file."""
    _, ref = newstest2014
    hyp = write(tmp_path / "hyp.de", ref[1:] + ref[:1])  # every line against the wrong one
    ours = evaluate(cache, "--hyp", hyp, "--testset", "wmt14/full", "--langpair", "en-de",
                    "--json")
    assert ours.returncode == 0, ours.stderr
    result = json.loads(ours.stdout)
    assert result["n_sentences"] == 3003
    assert (result["testset"], result["langpair"]) == ("wmt14/full", "en-de")
    assert result["bleu"]["score"] == score(ref[1:] + ref[:1], [ref])["bleu"]["score"]
    theirs = subprocess.run([str(Path(sys.executable).parent / "sacrebleu"), "-t", "wmt14/full",
                             "-l", "en-de", "-i", hyp, "-m", "bleu", "chrf", "-b", "-w", "4"],
                            env=offline_env(cache), capture_output=True, text=True, timeout=120)
    assert theirs.returncode == 0, theirs.stderr
    assert json.loads(theirs.stdout) == [round(result["bleu"]["score"], 4),
                                         round(result["chrf"]["score"], 4)]
    same = evaluate(cache, "--hyp", write(tmp_path / "ref.de", ref), "--testset", "wmt14/full",
                    "--langpair", "en-de", "--paper-bleu")
    assert same.returncode == 0, same.stderr
    lines = same.stdout.splitlines()
    assert lines[0] == "test set: sacreBLEU wmt14/full en-de, 3003 sentences, 1 reference(s)"
    assert lines[2].startswith("BLEU = 100.00 ")
    assert any(line.startswith("BLEU (the paper's") and " = 100.00 " in line for line in lines)


def test_checkpoint_translates_the_sets_source(cache: Path, newstest2014,
                                               tiny_checkpoint: Path) -> None:
    """`--checkpoint CKPT --testset wmt14`: the language pair from the checkpoint (en-de), the
    source and references from the cache, the translations `Translator` makes."""
    src, ref = newstest2014
    run = evaluate(cache, "--checkpoint", str(tiny_checkpoint), "--testset", "wmt14",
                   "--device", "cpu", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["testset"], result["langpair"], result["n_sentences"]) == ("wmt14", "en-de",
                                                                              STAND_IN)
    hyps = Translator.from_checkpoint(tiny_checkpoint, device="cpu").translate(src[:STAND_IN])
    expected = score(hyps, [ref[:STAND_IN]])
    assert result["bleu"]["score"] == expected["bleu"]["score"]
    assert result["chrf"]["score"] == expected["chrf"]["score"] > 0


def test_wmt22_xml_with_sacrebleus_choice_of_reference(cache: Path, newstest2014,
                                                       tmp_path: Path) -> None:
    """WMT22 en-de ships references by two translators; sacreBLEU scores against A."""
    _, ref = newstest2014
    run = evaluate(cache, "--hyp", write(tmp_path / "a.de", ref[:30]), "--testset", "wmt22",
                   "--langpair", "en-de", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["bleu"]["score"] == pytest.approx(100.0)
    assert result["bleu"]["signature"].startswith("nrefs:1|")  # B would score far below 100


def test_a_set_missing_from_the_cache_says_how_to_fill_it(cache: Path, tmp_path: Path) -> None:
    hyp = write(tmp_path / "hyp.de", ["Hallo."])
    run = evaluate(cache, "--hyp", hyp, "--testset", "wmt13", "--langpair", "en-de")
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert f"test set wmt13 en-de is not in sacreBLEU's cache {cache}" in run.stderr
    assert "`sacrebleu -t wmt13 -l en-de --echo src > /dev/null`" in run.stderr
    assert f"to {cache}/wmt13" in run.stderr


@pytest.mark.parametrize("args, message", [
    (("--testset", "no-such-set", "--langpair", "en-de"), "knows no test set 'no-such-set'"),
    (("--testset", "wmt14/full", "--langpair", "en-xx"),
     "test set wmt14/full has no language pair 'en-xx'; it has cs-en, de-en, "),
    (("--testset", "wmt14/full"), "--testset with --hyp needs --langpair"),
    (("--testset", "wmt14/full", "--langpair", "en-de", "--ref", "x"),
     "--testset brings its own source and references"),
])
def test_bad_names_are_one_line_errors(tmp_path: Path, capsys, args: tuple[str, ...],
                                       message: str) -> None:
    hyp = write(tmp_path / "hyp.de", ["Hallo."])
    assert main(["evaluate", "--hyp", hyp, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
