"""`transformer-mt fit / validate / test / predict` through LightningCLI, in process."""

from __future__ import annotations

import csv
import json
import lzma
import math
import re
from pathlib import Path

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from tests._tiny_fit import SMALL_VOCAB, small_corpus
from tests.conftest import REPO
from transformer_mt.commands.main import main
from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.inference.loaded_model import load_for_inference


def demo_args(run: Path, *extra: str) -> list[str]:
    """The demo config, shrunk to seconds: few steps, a small validation, files under `run`."""
    return [
        "--config", str(REPO / "configs" / "demo.yaml"),
        "--data.data_dir", str(small_corpus()),
        "--data.vocab_size", SMALL_VOCAB,
        "--data.cache_dir", str(run / "spm"),
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "2",
        "--checkpoint.dirpath", str(run / "checkpoints"),
        "--model.val_bleu_sentences", "8",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("fit")
    argv = ["fit", *demo_args(run, "--trainer.max_steps", "40",
                             "--trainer.val_check_interval", "20",
                             "--checkpoint.every_n_train_steps", "20")]
    assert main(argv) == 0
    return run


def read_metrics(run: Path) -> list[dict[str, str]]:
    """The rows of the newest CSV log under `run` (the command that ran last)."""
    files = sorted(run.glob("logs/version_*/metrics.csv"),
                   key=lambda path: int(path.parent.name.removeprefix("version_")))
    with open(files[-1], newline="") as handle:
        return list(csv.DictReader(handle))


def direct_metrics(ckpt: Path, corpus: Path, bleu_sentences: int, tmp_path: Path
                   ) -> dict[str, float]:
    """What validation should report for `corpus` (`.../name.{lang}`), computed without
    Lightning or the data module: the label-smoothed loss and the perplexity from the model's
    logits with torch's own cross-entropy, and BLEU of `transformer-mt translate` (greedy) on
    the first `bleu_sentences` pairs, scored by sacreBLEU."""
    loaded = load_for_inference(ckpt)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    sources, targets = (Path(str(corpus).format(lang=lang)).read_text(encoding="utf-8")
                        .splitlines() for lang in ("en", "de"))
    src = [ids + [EOS_ID] for ids in tokenizer.encode(sources)]
    tgt = tokenizer.encode(targets)
    with torch.no_grad():
        logits = model(pad_rows(src), pad_rows([[BOS_ID] + ids for ids in tgt]))
    gold = pad_rows([ids + [EOS_ID] for ids in tgt]).flatten()
    logits = logits.flatten(0, 1)
    loss = F.cross_entropy(logits, gold, ignore_index=PAD_ID, label_smoothing=0.1,
                           reduction="sum")
    nll = F.cross_entropy(logits, gold, ignore_index=PAD_ID, reduction="sum")
    tokens = gold.ne(PAD_ID).sum()
    result = {"loss": (loss / tokens).item(), "ppl": math.exp((nll / tokens).item())}
    if bleu_sentences:
        first = tmp_path / "first.en"
        first.write_text("".join(line + "\n" for line in sources[:bleu_sentences]),
                         encoding="utf-8")
        hyps = tmp_path / "hyp.de"
        assert main(["translate", "--checkpoint", str(ckpt), "--input", str(first),
                     "--output", str(hyps), "--beam-size", "1"]) == 0
        result["bleu"] = sacrebleu.corpus_bleu(hyps.read_text(encoding="utf-8").splitlines(),
                                               [targets[:bleu_sentences]]).score
    return result


def pad_rows(rows: list[list[int]]) -> torch.Tensor:
    """Right-padded (len(rows), longest) ids."""
    batch = torch.full((len(rows), max(map(len, rows))), PAD_ID)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row)
    return batch


def test_fit_writes_checkpoints_and_validation_loss_falls(trained: Path) -> None:
    checkpoints = trained / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert sorted(p.name for p in checkpoints.glob("step*.ckpt")) == [
        "step000020.ckpt", "step000040.ckpt"]
    val_loss = [float(r["val/loss"]) for r in read_metrics(trained) if r.get("val/loss")]
    assert len(val_loss) == 2 and val_loss[1] < val_loss[0]
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    meta = checkpoint["transformer_mt"]
    assert (meta["src_lang"], meta["tgt_lang"]) == ("en", "de")
    assert meta["model_config"]["d_model"] == 128
    assert meta["model_config"]["vocab_size"] == int(SMALL_VOCAB)
    assert isinstance(meta["sentencepiece"], bytes)


def first_pairs(split: str, folder: Path, n: int = 48) -> Path:
    """The first `n` pairs of a split of the small corpus, as `folder/split.{lang}`."""
    corpus = folder / f"{split}.{{lang}}"
    for lang in ("en", "de"):
        with lzma.open(small_corpus() / f"{split}.{lang}.xz", "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
        Path(str(corpus).format(lang=lang)).write_text("".join(f"{line}\n" for line in lines[:n]),
                                                       encoding="utf-8")
    return corpus


def test_validate_reports_the_metrics_of_the_checkpoint(trained: Path, tmp_path: Path) -> None:
    """`validate` on a whole (small) set reports the loss, perplexity and greedy BLEU of its
    first `val_bleu_sentences` that the same computation done directly gives."""
    ckpt = trained / "checkpoints" / "last.ckpt"
    corpus = first_pairs("valid", tmp_path)
    assert main(["validate", *demo_args(trained, "--ckpt_path", str(ckpt),
                                        "--data.valid", json.dumps([str(corpus)]),
                                        "--trainer.limit_val_batches", "1.0")]) == 0
    reported = {name: float(value) for row in read_metrics(trained)
                for name, value in row.items() if name.startswith("val/") and value}
    expected = direct_metrics(ckpt, corpus, 8, tmp_path)
    assert reported["val/loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert reported["val/ppl"] == pytest.approx(expected["ppl"], rel=1e-5)
    # Lightning logs a float as a float32 tensor: equal up to that rounding
    assert reported["val/bleu"] == pytest.approx(expected["bleu"], rel=1e-6)


def test_test_scores_the_whole_split_as_evaluate_checkpoint_does(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`test` reports the loss as validation does, and translates every sentence of the split
    with the checkpoint's predict search (beam 4, not validation's greedy subset): it prints
    the very score lines, with signatures, that `evaluate --checkpoint` prints for the same
    files, and logs the same BLEU and chrF."""
    ckpt = trained / "checkpoints" / "last.ckpt"
    corpus = first_pairs("test", tmp_path)
    assert main(["test", *demo_args(trained, "--ckpt_path", str(ckpt),
                                    "--data.test", json.dumps([str(corpus)]),
                                    "--trainer.limit_test_batches", "1.0")]) == 0
    tested = capsys.readouterr().out
    reported = {name: float(value) for row in read_metrics(trained)
                for name, value in row.items() if name.startswith("test/") and value}
    expected = direct_metrics(ckpt, corpus, 0, tmp_path)
    assert reported["test/loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert reported["test/ppl"] == pytest.approx(expected["ppl"], rel=1e-5)
    files = [str(corpus).format(lang=lang) for lang in ("en", "de")]
    evaluate = ["evaluate", "--checkpoint", str(ckpt), "--src", files[0], "--ref", files[1],
                "--device", "cpu"]
    assert main(evaluate) == 0
    header, scores = capsys.readouterr().out.strip().split("\n\n", 1)
    assert header == f"translated by {ckpt}: beam 4, length penalty 0.6, max length 1.0 * " \
        "source + 50"
    assert tested.startswith("test: 48 sentences of data.test, translated with beam 4, length "
                             "penalty 0.6, max length 1.0 * source + 50 ")
    assert f"\n\n{scores}\n" in tested  # BLEU with its precisions and lengths, chrF, signatures
    assert re.search(r"^BLEU = \d+\.\d\d [\d.]+/[\d.]+/[\d.]+/[\d.]+ \(BP = .* hyp_len = "
                     r"[1-9]\d* ref_len = [1-9]", scores, re.MULTILINE)
    assert main([*evaluate, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for name in ("bleu", "chrf"):
        assert reported[f"test/{name}"] == pytest.approx(result[name]["score"], abs=0.01)
    assert result["chrf"]["score"] > 0


def test_ckpt_path_last_resolves_or_fails_loudly(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["validate", *demo_args(trained, "--ckpt_path", "last")]) == 0
    assert "val/loss" in capsys.readouterr().out
    empty = tmp_path / "empty_run"
    assert main(["validate", *demo_args(empty, "--ckpt_path", "last")]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path last: no last.ckpt in" in err and str(empty) in err


def test_predict_writes_one_line_per_input(trained: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.en"
    source.write_text("The dog sleeps.\n\nA woman reads a book in the garden.\n   \nHello\n")
    output = tmp_path / "out.de"
    argv = ["predict", *demo_args(trained, "--ckpt_path", str(trained / "checkpoints/last.ckpt"),
                                  "--data.predict", str(source),
                                  "--data.predict_output", str(output))]
    assert main(argv) == 0
    lines = output.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 6 and lines[-1] == ""  # 5 lines, each ending in a newline
    assert lines[1] == "" and lines[3] == ""  # empty and blank input lines stay empty
    # predict runs the one implementation of translation, with its own beam and penalty
    from transformer_mt.inference.translator import Translator

    translator = Translator.from_checkpoint(trained / "checkpoints/last.ckpt", device="cpu")
    sources = source.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[:-1] == translator.translate(sources, beam_size=4, length_penalty=0.6)


def test_unknown_config_key_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *demo_args(tmp_path, "--model.no_such_option", "3")])
    assert exit_info.value.code == 2
    assert "no_such_option" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_evaluation_takes_the_vocabulary_from_the_checkpoint_not_the_training_data(
    trained: Path, tmp_path: Path, command: str
) -> None:
    """With --ckpt_path, the training corpora are never read: here they do not exist."""
    source = tmp_path / "source.en"
    source.write_text("The dog sleeps.\n")
    argv = [command, *demo_args(trained, "--ckpt_path", str(trained / "checkpoints/last.ckpt"),
                                "--data.train", '["no/such/corpus.{lang}"]',
                                "--data.cache_dir", str(tmp_path / "cache"),
                                "--trainer.limit_test_batches", "1",
                                "--data.predict", str(source),
                                "--data.predict_output", str(tmp_path / "out.de"))]
    assert main(argv) == 0
    assert not list((tmp_path / "cache").glob("vocab-*"))  # no vocabulary was built
