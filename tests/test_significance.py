"""Paired significance (`scoring.significance`, `evaluate --hyp A --hyp B ...`): sacreBLEU's
paired bootstrap and approximate randomization, on systems whose difference is known.

The systems are made from the 1,000 German references of data/test.de.xz: "short" drops the
last word of every sentence (BLEU about 54), "ref" is the references themselves (BLEU 100),
"two_fixed" is "short" with two sentences restored. short -> ref is as significant as a
difference can be; short -> two_fixed is a real but tiny gain that 1,000 sentences cannot
establish; identical files must get p = 1.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from tests.conftest import REPO
from transformer_mt.commands.main import main
from transformer_mt.scoring.significance import paired_test


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with lzma.open(REPO / "data" / "test.de.xz", "rt", encoding="utf-8") as handle:
        refs = handle.read().splitlines()
    short = [" ".join(line.split()[:-1]) for line in refs]
    two_fixed = [refs[0], refs[1], *short[2:]]
    folder = tmp_path_factory.mktemp("systems")
    files = {}
    for name, lines in (("ref", refs), ("short", short), ("short_copy", short),
                        ("two_fixed", two_fixed)):
        files[name] = folder / f"{name}.de"
        files[name].write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return files


def paired_json(capsys: pytest.CaptureFixture[str], systems: dict[str, Path], *names: str,
                extra: tuple[str, ...] = ()) -> dict:
    argv = ["evaluate", *(arg for name in names for arg in ("--hyp", str(systems[name]))),
            "--ref", str(systems["ref"]), "--json", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_known_significant_difference(systems, capsys) -> None:
    result = paired_json(capsys, systems, "short", "ref", "two_fixed")
    assert result["test"] == "bs" and result["samples"] == 1000
    assert result["systems"] == [str(systems[n]) for n in ("short", "ref", "two_fixed")]
    for metric in ("bleu", "chrf"):
        baseline, better, barely = result[metric]["results"]
        assert baseline["p_value"] is None
        assert baseline["score"] < barely["score"] < better["score"]
        # no resample of 1,000 shows a difference as large by chance: the smallest p possible
        assert better["p_value"] == pytest.approx(1 / 1001)
        assert barely["p_value"] > 0.05  # two sentences of 1,000: not established
        assert 0 < baseline["ci"] < 2 and better["ci"] == pytest.approx(0.0, abs=1e-6)
        assert abs(baseline["mean"] - baseline["score"]) < baseline["ci"]
    assert result["bleu"]["results"][1]["score"] == pytest.approx(100.0)
    assert "bs:1000|seed:12345|" in result["bleu"]["signature"]


def test_numbers_are_sacrebleus_own(systems) -> None:
    """`paired_test` hands the systems to sacreBLEU's PairedTest and reports what it returns."""
    refs = systems["ref"].read_text(encoding="utf-8").splitlines()
    named = [(n, systems[n].read_text(encoding="utf-8").splitlines()) for n in ("short", "ref")]
    for test, name, factory in (("bs", "BLEU", lambda: BLEU(references=[refs])),
                                ("ar", "chrF2", lambda: CHRF(references=[refs]))):
        ours = paired_test(named, factory(), test, samples=500)
        _, theirs = PairedTest(named, {"m": factory()}, None, test_type=test, n_samples=500,
                               n_ar_confidence=0)()
        (column,) = [value for key, value in theirs.items() if key != "System"]
        assert [r["score"] for r in ours.results] == [r.score for r in column]
        assert [r["p_value"] for r in ours.results] == [r.p_value for r in column]
        assert [r["ci"] for r in ours.results] == pytest.approx([r.ci for r in column])
        assert ours.samples == 500 and ours.name == name


@pytest.mark.parametrize("test, extra", [("bs", ()), ("ar", ("--paired", "ar",
                                                                "--resamples", "2000"))])
def test_identical_systems_get_p_one(systems, capsys, test: str, extra: tuple[str, ...]) -> None:
    """sacreBLEU 2.6 alone reports 1 / (n + 1) here, counting only strictly larger
    differences; a system is never significantly different from itself."""
    result = paired_json(capsys, systems, "short", "short_copy", "ref", extra=extra)
    assert result["test"] == test
    for metric in ("bleu", "chrf"):
        baseline, same, better = result[metric]["results"]
        assert same["p_value"] == 1.0
        assert same["score"] == baseline["score"]
        assert better["p_value"] < 0.001
    refs = systems["ref"].read_text(encoding="utf-8").splitlines()
    short = systems["short"].read_text(encoding="utf-8").splitlines()
    _, raw = PairedTest([("a", short), ("b", list(short))], {"m": BLEU(references=[refs])},
                        None, test_type=test, n_samples=200)()
    assert raw["BLEU"][1].p_value == pytest.approx(1 / 201)  # what is corrected


def test_approximate_randomization_with_intervals(systems, capsys) -> None:
    result = paired_json(capsys, systems, "short", "ref", extra=("--paired", "ar",
                                                                 "--resamples", "2000"))
    assert result["test"] == "ar" and result["samples"] == 2000
    baseline, better = result["bleu"]["results"]
    assert better["p_value"] == pytest.approx(1 / 2001)
    # sacreBLEU's command line gives AR no interval; 1,000 bootstrap resamples give it here
    assert baseline["ci"] > 0 and baseline["mean"] is not None
    assert "ar:2000|" in result["bleu"]["signature"] and "bs:1000|" in result["bleu"]["signature"]


def test_text_table(systems, capsys) -> None:
    argv = ["evaluate", "--hyp", str(systems["short"]), "--hyp", str(systems["ref"]),
            "--hyp", str(systems["two_fixed"]), "--ref", str(systems["ref"]),
            "--metrics", "bleu,chrf", "--paper-bleu", "--langpair", "en-de"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("  ")[0] == "system"
    assert "BLEU (mean ± 95% CI)" in lines[0] and "paper BLEU (mean ± 95% CI)" in lines[0]
    assert lines[1].startswith(f"{systems['short']} (baseline) ")
    assert "p = " not in lines[1]
    assert lines[2].count("p = 0.0010*") == 3  # sacreBLEU BLEU, chrF, paper BLEU
    assert "p = " in lines[3] and "*" not in lines[3]
    assert lines[5].startswith("paired bootstrap resampling against the baseline (sacreBLEU, "
                               "1000 resamples)")
    assert lines[-1].startswith("signature (paper BLEU): nrefs:1|bs:1000|seed:12345|")
    assert lines[-1].endswith("|pre:moses-de+atat")


def test_paired_options_need_two_systems(systems, capsys) -> None:
    one = ["evaluate", "--hyp", str(systems["short"]), "--ref", str(systems["ref"])]
    assert main([*one, "--paired", "ar"]) == 2
    assert "give --hyp two or more times" in capsys.readouterr().err
    assert main([*one, "--hyp", str(systems["ref"]), "--resamples", "0"]) == 2
    assert "--resamples must be >= 1" in capsys.readouterr().err
