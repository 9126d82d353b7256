"""`transformer-mt evaluate` and `scoring.metrics` against sacreBLEU's own numbers; the search
`evaluate --checkpoint` takes from the checkpoint. Test sets by name, the paper's BLEU and
significance have their own modules (test_testsets.py, test_paper_bleu.py,
test_significance.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

from transformer_mt.commands import evaluate
from transformer_mt.commands.main import main as run_cli
from transformer_mt.errors import UserError
from transformer_mt.scoring import metrics

HYPS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the dog.",
    "He read the book in two days!",
    "Two men are playing football in a park.",
]
REFS = [
    "The cat is sitting on the mat.",
    "The quick brown fox jumped over the lazy dog.",
    "He read that book in two days.",
    "Two men play soccer in the park.",
]
REFS2 = [
    "A cat sat on the mat.",
    "A fast brown fox jumps over the lazy dog.",
    "He finished the book in two days!",
    "Two guys are playing football in a park.",
]

def write(path: Path, lines: list[str], newline: str = "\n") -> str:
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return str(path)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "hyp": write(tmp_path / "hyp.txt", HYPS),
        "ref": write(tmp_path / "ref.txt", REFS),
        "ref2": write(tmp_path / "ref2.txt", REFS2),
    }


def json_result(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert run_cli([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bleu_text_output_matches_sacrebleu(files, capsys) -> None:
    assert run_cli(["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                    "--metrics", "bleu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    expected = sacrebleu.corpus_bleu(HYPS, [REFS])
    metric = BLEU()
    metric.corpus_score(HYPS, [REFS])
    assert 0 < expected.score < 100
    assert out == [str(expected), f"signature: {metric.get_signature()}"]
    assert out[1] == "signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" \
        + sacrebleu.__version__


def test_json_scores_equal_sacrebleu_exactly(files, capsys) -> None:
    result = json_result(capsys, ["evaluate", "--hyp", files["hyp"], "--ref", files["ref"]])
    assert set(result) == {"bleu", "chrf", "n_sentences"}
    assert result["n_sentences"] == 4
    assert result["bleu"]["score"] == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert result["chrf"]["score"] == sacrebleu.corpus_chrf(HYPS, [REFS]).score
    assert "BP = " in result["bleu"]["verbose"]
    assert result["chrf"]["verbose"] == ""
    assert result["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert result["chrf"]["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert result["chrf"]["name"] == "chrF2"


def test_hand_known_values(tmp_path, capsys) -> None:
    same = write(tmp_path / "same.txt", REFS)
    disjoint = write(tmp_path / "disjoint.txt", ["QZX ZQX"] * len(REFS))
    ref = write(tmp_path / "ref.txt", REFS)
    assert run_cli(["evaluate", "--hyp", same, "--ref", ref]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 ")
    assert out[3] == "chrF2 = 100.00"
    identical = json_result(capsys, ["evaluate", "--hyp", same, "--ref", ref])
    # JSON keeps sacreBLEU's unrounded float, which can be 100.00000000000004.
    assert identical["bleu"]["score"] == pytest.approx(100.0, abs=1e-9)
    assert identical["chrf"]["score"] == pytest.approx(100.0, abs=1e-9)
    nothing = json_result(capsys, ["evaluate", "--hyp", disjoint, "--ref", ref])
    assert nothing["bleu"]["score"] == 0.0
    assert nothing["chrf"]["score"] == 0.0


def test_chrf_and_chrf_plus_plus_match_sacrebleu(files, capsys) -> None:
    assert run_cli(["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                    "--metrics", "chrf"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    metric = CHRF()
    metric.corpus_score(HYPS, [REFS])
    assert out == [str(sacrebleu.corpus_chrf(HYPS, [REFS])),
                   f"signature: {metric.get_signature()}"]
    plus = json_result(capsys, ["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                                "--metrics", "chrf", "--chrf-word-order", "2"])
    assert set(plus) == {"chrf", "n_sentences"}
    assert plus["chrf"]["name"] == "chrF2++"
    assert plus["chrf"]["score"] == sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score
    assert "nw:2" in plus["chrf"]["signature"]


def test_multiple_references(files, capsys) -> None:
    result = json_result(capsys, ["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                                  "--ref", files["ref2"]])
    assert result["bleu"]["score"] == sacrebleu.corpus_bleu(HYPS, [REFS, REFS2]).score
    assert result["chrf"]["score"] == sacrebleu.corpus_chrf(HYPS, [REFS, REFS2]).score
    assert result["bleu"]["signature"].startswith("nrefs:2|")
    assert result["bleu"]["score"] > sacrebleu.corpus_bleu(HYPS, [REFS]).score


def test_lowercase_and_tokenizer_options(tmp_path, capsys) -> None:
    hyp = write(tmp_path / "hyp.txt", [s.upper() for s in REFS])
    ref = write(tmp_path / "ref.txt", REFS)
    result = json_result(capsys, ["evaluate", "--hyp", hyp, "--ref", ref, "--lowercase",
                                  "--tokenize", "intl"])
    assert result["bleu"]["score"] == pytest.approx(100.0, abs=1e-9)
    assert "|case:lc|" in result["bleu"]["signature"]
    assert "|tok:intl|" in result["bleu"]["signature"]
    assert run_cli(["evaluate", "--hyp", hyp, "--ref", ref, "--tokenize", "nope"]) == 2
    assert "unknown sacreBLEU tokenizer 'nope'" in capsys.readouterr().err


def test_crlf_references_score_like_lf(tmp_path, capsys) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPS)
    lf = json_result(capsys, ["evaluate", "--hyp", hyp,
                              "--ref", write(tmp_path / "lf.txt", REFS)])
    crlf = json_result(capsys, ["evaluate", "--hyp", hyp,
                                "--ref", write(tmp_path / "crlf.txt", REFS, "\r\n")])
    assert crlf == lf


def test_line_count_mismatch_names_counts_and_files(tmp_path, files, capsys) -> None:
    short = write(tmp_path / "short.txt", REFS[:3])
    assert run_cli(["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                    "--ref", short]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("transformer-mt: error: ")
    assert len(err.splitlines()) == 1
    assert "4 lines" in err and "has 3" in err
    assert files["hyp"] in err and short in err


def test_invalid_utf8_names_file_and_line(tmp_path, files, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbad \xff byte\nend\n")
    assert run_cli(["evaluate", "--hyp", str(bad), "--ref", files["ref"]]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 3: invalid UTF-8" in err


def test_empty_or_missing_files_are_user_errors(tmp_path, files, capsys) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert run_cli(["evaluate", "--hyp", str(empty), "--ref", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err
    assert run_cli(["evaluate", "--hyp", str(tmp_path / "nope.txt"), "--ref", files["ref"]]) == 2
    assert "no such file" in capsys.readouterr().err


def test_option_combinations(files, capsys) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse: --hyp and --checkpoint are exclusive
        run_cli(["evaluate", "--hyp", files["hyp"], "--checkpoint", "x.ckpt",
                 "--ref", files["ref"]])
    assert exc.value.code == 2
    assert run_cli(["evaluate", "--checkpoint", "x.ckpt", "--ref", files["ref"]]) == 2
    assert "--checkpoint needs --src" in capsys.readouterr().err
    assert run_cli(["evaluate", "--hyp", files["hyp"], "--src", files["hyp"],
                    "--ref", files["ref"]]) == 2
    assert run_cli(["evaluate", "--hyp", "-", "--ref", "-"]) == 2
    assert "stdin" in capsys.readouterr().err


def test_score_function_for_training(capsys) -> None:
    result = metrics.score(HYPS, [REFS], metrics=("bleu",))
    assert set(result) == {"bleu", "n_sentences"}
    assert result["bleu"]["score"] == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    plus = metrics.score(HYPS, [REFS], options=metrics.MetricOptions(chrf_word_order=2))
    assert plus["chrf"]["name"] == "chrF2++"
    with pytest.raises(UserError, match="4 lines.*has 3"):
        metrics.score(HYPS, [REFS[:3]])
    with pytest.raises(UserError, match="no hypotheses"):
        metrics.score([], [[]])


def parse_evaluate(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(argv)


def test_checkpoint_mode_scores_the_translators_output(
    tmp_path: Path, files, capsys, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    """--checkpoint translates through `Translator` (never the CLI) and scores exactly its
    output, with the beam size asked for."""
    from transformer_mt.commands import main as cli
    from transformer_mt.inference.translator import Translator

    monkeypatch.setattr(cli, "main", lambda argv: pytest.fail("evaluate went through the CLI"))
    sources = ["the cat sleeps", "a big dog runs quickly", "der Hund", "the red house"]
    src = write(tmp_path / "src.txt", sources)
    args = parse_evaluate(["--checkpoint", str(tiny_checkpoint), "--src", src,
                           "--ref", files["ref"], "--beam-size", "3", "--device", "cpu",
                           "--json"])
    assert evaluate.run(args) == 0
    result = json.loads(capsys.readouterr().out)
    hyps = Translator.from_checkpoint(tiny_checkpoint, device="cpu").translate(sources,
                                                                               beam_size=3)
    assert len(set(hyps)) > 1
    assert result["bleu"]["score"] == sacrebleu.corpus_bleu(hyps, [REFS]).score
    assert result["n_sentences"] == 4


def test_checkpoint_mode_rejects_a_bad_beam_size_before_loading(files) -> None:
    args = parse_evaluate(["--checkpoint", "missing.ckpt", "--src", files["ref2"],
                           "--ref", files["ref"], "--beam-size", "0"])
    with pytest.raises(UserError, match="--beam-size must be >= 1, got 0"):
        evaluate.run(args)


def test_checkpoint_mode_checks_src_ref_counts_before_translating(
    tmp_path, files, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from transformer_mt.inference import translator

    monkeypatch.setattr(translator.Translator, "from_checkpoint",
                        lambda *a, **k: pytest.fail("translated anyway"))
    short = write(tmp_path / "src.txt", HYPS[:2])
    args = parse_evaluate(["--checkpoint", "m.ckpt", "--src", short, "--ref", files["ref"]])
    with pytest.raises(UserError, match=r"has 2 lines.*has 4"):
        evaluate.run(args)


def test_text_blocks_follow_the_requested_metric_order(files, capsys) -> None:
    assert run_cli(["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                    "--metrics", "chrf", "bleu", "chrf"]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert [b.split(" = ")[0] for b in blocks] == ["chrF2", "BLEU"]
    assert all(b.splitlines()[1].startswith("signature: nrefs:1|") for b in blocks)


def test_ter_and_comma_separated_metrics(files, capsys) -> None:
    """`--metrics bleu,chrf,ter` (or space-separated): sacreBLEU's TER, with its defaults
    (case-insensitive, as its signature says), beside BLEU and chrF, with several references."""
    result = json_result(capsys, ["evaluate", "--hyp", files["hyp"], "--ref", files["ref"],
                                  "--ref", files["ref2"], "--metrics", "ter,bleu", "chrf"])
    assert list(result) == ["ter", "bleu", "chrf", "n_sentences"]
    assert result["ter"]["score"] == sacrebleu.corpus_ter(HYPS, [REFS, REFS2]).score
    assert result["ter"]["name"] == "TER"
    metric = TER()
    metric.corpus_score(HYPS, [REFS, REFS2])
    assert result["ter"]["signature"] == str(metric.get_signature())
    assert result["ter"]["signature"].startswith("nrefs:2|case:lc|tok:tercom|")
    with pytest.raises(SystemExit) as exc:
        run_cli(["evaluate", "--hyp", files["hyp"], "--ref", files["ref"], "--metrics",
                 "bleu,meteor"])
    assert exc.value.code == 2
    assert "unknown metric meteor; choose from bleu,chrf,ter" in capsys.readouterr().err


def test_target_language_picks_sacrebleus_tokenizer(tmp_path, capsys) -> None:
    """As `sacrebleu -l en-zh`: BLEU on Chinese uses the zh tokenizer unless told otherwise."""
    hyp = write(tmp_path / "hyp.zh", ["猫在睡觉。", "你好，世界。"])
    ref = write(tmp_path / "ref.zh", ["猫在床上睡觉。", "你好，世界！"])
    zh = json_result(capsys, ["evaluate", "--hyp", hyp, "--ref", ref, "--langpair", "en-zh"])
    assert "|tok:zh|" in zh["bleu"]["signature"]
    assert zh["bleu"]["score"] == sacrebleu.corpus_bleu(
        ["猫在睡觉。", "你好，世界。"], [["猫在床上睡觉。", "你好，世界！"]], tokenize="zh").score
    plain = json_result(capsys, ["evaluate", "--hyp", hyp, "--ref", ref])
    assert "|tok:13a|" in plain["bleu"]["signature"]


def test_checkpoint_search_defaults_to_its_predict_settings(
    tmp_path: Path, files, capsys, tiny_checkpoint: Path
) -> None:
    """Without search options, --checkpoint translates with the checkpoint's own
    `model.predict_beam_size`, `model.val_length_penalty` and `model.predict_max_tokens`, as
    `test` and `predict` do; each option given overrides its one setting."""
    import torch

    from transformer_mt.inference.translator import Translator

    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"] = {"predict_beam_size": 1, "val_length_penalty": 1.5,
                                      "predict_max_tokens": 64, "val_beam_size": 5}
    ckpt = tmp_path / "with_hparams.ckpt"
    torch.save(checkpoint, ckpt)
    sources = ["the cat sleeps", "a big dog runs quickly", "der Hund", "the red house"]
    src = write(tmp_path / "src.txt", sources)
    args = ["evaluate", "--checkpoint", str(ckpt), "--src", src, "--ref", files["ref"],
            "--device", "cpu"]
    result = json_result(capsys, args)
    assert result["search"] == {"beam_size": 1, "length_penalty": 1.5, "max_len_a": 1.0,
                                "max_len_b": 50, "nbest": 1, "sampling": False,
                                "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert result["batch_tokens"] == 64
    translator = Translator.from_checkpoint(ckpt, device="cpu")
    greedy = translator.translate(sources, beam_size=1, length_penalty=1.5)
    assert result["bleu"]["score"] == sacrebleu.corpus_bleu(greedy, [REFS]).score
    overridden = json_result(capsys, [*args, "--beam-size", "3", "--max-len-b", "4"])
    assert (overridden["search"]["beam_size"], overridden["search"]["length_penalty"],
            overridden["search"]["max_len_b"]) == (3, 1.5, 4)
    short = translator.translate(sources, beam_size=3, length_penalty=1.5, max_len_b=4)
    assert short != greedy
    assert overridden["bleu"]["score"] == sacrebleu.corpus_bleu(short, [REFS]).score
    assert run_cli(args) == 0  # text: what was translated how, then the scores
    out = capsys.readouterr().out
    assert out.startswith(f"translated by {ckpt}: greedy, length penalty 1.5, max length "
                          "1.0 * source + 50\n\nBLEU = ")
