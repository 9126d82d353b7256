"""Bad input of every kind: one clear line on stderr, exit status 2, never a traceback, and
never an output that looks complete. Awkward but valid input (CRLF, control characters, blank
or very long lines) works and keeps one output line per input line. Checkpoints are loaded
without running code from them. docs/reliability.md lists what the user sees in each case.

Everything runs in process through `cli.main`; translate/evaluate/average use a tiny random
checkpoint, the Lightning commands the demo config (most cases fail before training starts).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests._tiny_ckpt import make_tiny_checkpoint, tiny_model
from tests._tiny_fit import REPO, tiny_fit_args
from transformer_mt.commands.main import main
from transformer_mt.errors import UserError

ERROR = "transformer-mt: error: "


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny_ckpt")
    return make_tiny_checkpoint(directory / "tiny.ckpt", directory / "spm")


@pytest.fixture(scope="module")
def spm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spm")


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    """Files that are not usable checkpoints, by kind."""
    directory = tmp_path_factory.mktemp("bad_ckpt")
    data = ckpt.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "corrupt": bytes(range(256)) * 64,
        "text": b"this is not a checkpoint\n",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = directory / f"{name}.ckpt"
        paths[name].write_bytes(content)
    paths["bare_state_dict"] = directory / "bare_state_dict.ckpt"
    torch.save(tiny_model().state_dict(), paths["bare_state_dict"])
    return paths


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """rc, stdout, stderr of one command (argument errors exit through SystemExit)."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def user_error(result: tuple[int, str, str], *fragments: str, alone: bool = True) -> str:
    """Check exit status 2 and exactly one error line, the last on stderr, with `fragments`.

    `alone`: stderr holds nothing else (the user commands). Lightning commands print their
    usual start-up lines (seed, accelerator) before the error, so for them it is False.
    """
    rc, _, err = result
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert [line for line in lines if ERROR in line] == [lines[-1]], err
    assert lines[-1].startswith(ERROR)
    if alone:
        assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def translate(capsys: pytest.CaptureFixture, ckpt: Path, *argv: str) -> tuple[int, str, str]:
    return run(capsys, "translate", "--checkpoint", str(ckpt), "--beam-size", "2",
               "--max-len-b", "8", *argv)


# ---------------------------------------------------------------- files: translate / evaluate
def test_missing_or_directory_input(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    ckpt: Path) -> None:
    missing = tmp_path / "missing.txt"
    user_error(translate(capsys, ckpt, "--input", str(missing)), f"{missing}: no such file")
    user_error(translate(capsys, ckpt, "--input", str(tmp_path)),
               f"{tmp_path}: is a directory, expected a file")
    user_error(run(capsys, "translate", "--checkpoint", str(tmp_path)), "is a directory")
    user_error(run(capsys, "evaluate", "--hyp", str(missing), "--ref", str(missing)),
               "no such file")


def test_empty_files(tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    ref = tmp_path / "ref.txt"
    ref.write_text("a line\n")
    user_error(run(capsys, "evaluate", "--hyp", str(empty), "--ref", str(ref)),
               f"{empty}: file is empty")
    # translating nothing is not an error: zero lines in, zero lines out
    assert translate(capsys, ckpt, "--input", str(empty)) == (0, "", "")


def test_invalid_utf8_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          ckpt: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first line\nsecond line\nGrüße aus Köln\n".encode("latin-1"))
    rc, out, err = translate(capsys, ckpt, "--input", str(bad))
    user_error((rc, out, err), f"{bad}: line 3: invalid UTF-8", "iconv")
    assert out == ""  # nothing printed before the error: no output that looks complete
    good = tmp_path / "good.txt"
    good.write_text("1\n2\n3\n")
    user_error(run(capsys, "evaluate", "--hyp", str(good), "--ref", str(bad)),
               f"{bad}: line 3: invalid UTF-8")


def test_line_count_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path) -> None:
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("a\nb\nc\n")
    ref.write_text("a\nb\n")
    user_error(run(capsys, "evaluate", "--hyp", str(hyp), "--ref", str(ref)),
               f"{hyp} has 3 lines, {ref} has 2")
    user_error(run(capsys, "evaluate", "--checkpoint", str(ckpt), "--src", str(hyp),
                   "--ref", str(ref)), "has 3 lines", "has 2")


def test_crlf_input_translates_like_lf(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       ckpt: Path) -> None:
    lines = ["the cat sleeps", "", "der Hund läuft schnell"]
    lf, crlf = tmp_path / "lf.txt", tmp_path / "crlf.txt"
    lf.write_bytes("".join(line + "\n" for line in lines).encode())
    crlf.write_bytes("".join(line + "\r\n" for line in lines).encode())
    rc, expected, _ = translate(capsys, ckpt, "--input", str(lf))
    assert rc == 0 and expected.count("\n") == 3 and "\r" not in expected
    assert translate(capsys, ckpt, "--input", str(crlf))[:2] == (0, expected)


def test_control_characters_and_blank_lines_keep_the_line_count(
    tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path
) -> None:
    lines = [b"a\x00b NUL inside", b"\x0bvertical\x0ctab and form feed\x1c", b"\x1b[31mred\x1b[0m",
             "next line\u0085and line separator\u2028here".encode(), b"   \t  ", b"", b"\x7f"]
    source = tmp_path / "controls.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    rc, out, err = translate(capsys, ckpt, "--input", str(source))
    assert rc == 0, err
    assert out.endswith("\n")
    outputs = out[:-1].split("\n")
    assert len(outputs) == len(lines)
    assert all(outputs[:4]) and outputs[4] == outputs[5] == ""  # blank in, empty line out


def test_ten_thousand_token_line_is_truncated_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path
) -> None:
    source = tmp_path / "long.txt"
    source.write_text("short line\n" + " ".join(["dog"] * 10_000) + "\nend\n")
    rc, out, err = translate(capsys, ckpt, "--input", str(source))
    assert rc == 0, err
    assert len(out.split("\n")) == 4 and out.split("\n")[1]  # 3 lines; the long one translated
    assert "warning: 1 input line(s) longer than 63 tokens were truncated" in err


@pytest.mark.parametrize(("option", "message"), [
    (["--beam-size", "0"], "--beam-size must be >= 1, got 0"),
    (["--temperature", "-1", "--sampling"], "--temperature must be > 0, got -1.0"),
    (["--batch-tokens", "0"], "--batch-tokens must be >= 1, got 0"),
    (["--nbest", "5"], "--nbest 5 exceeds --beam-size 2"),
])
def test_impossible_translate_options(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      ckpt: Path, option: list[str], message: str) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat\n")
    user_error(translate(capsys, ckpt, "--input", str(source), *option), message)


def test_unknown_option_or_value_for_a_user_command(capsys: pytest.CaptureFixture,
                                                    ckpt: Path) -> None:
    user_error(run(capsys, "translate", "--checkpoint", str(ckpt), "--device", "tpu"),
               "argument --device: invalid choice: 'tpu'", "(see `transformer-mt translate")
    user_error(run(capsys, "translate", "--checkpoint", str(ckpt), "--no-such-option"),
               "unrecognized arguments: --no-such-option")
    rc, out, _ = run(capsys, "translate", "--help")
    assert rc == 0 and "--beam-size" in out


def test_unwritable_output_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          ckpt: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        (tmp_path / "no" / "such" / "dir" / "out.txt", "does not exist"),
        (a_file / "out.txt", f"{a_file} is not a directory"),
        (tmp_path, "is a directory, expected a file path"),
    ]
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((locked / "out.txt", "cannot write (Permission denied)"))
    for output, message in cases:
        user_error(translate(capsys, ckpt, "--input", str(source), "--output", str(output)),
                   message)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.txt", "a_file"] + (["locked"] if os.geteuid() != 0 else []))



def test_a_write_that_fails_midway_is_one_line_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up while `plot` or `attention --json` write (textio.write_bytes)."""
    import transformer_mt.textio as textio

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(textio.os, "fsync", full)
    with pytest.raises(UserError, match=r"out\.png: cannot write \(No space left on device\)"):
        textio.write_bytes(tmp_path / "out.png", b"\x89PNG")
    assert list(tmp_path.iterdir()) == []

# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(("kind", "message"), [
    ("empty", "not a readable checkpoint"),
    ("truncated", "not a readable checkpoint (truncated or corrupt"),
    ("corrupt", "not a readable checkpoint"),
    ("text", "not a readable checkpoint"),
    ("bare_state_dict", "not a transformer-mt checkpoint (no 'transformer_mt' section)"),
])
def test_bad_checkpoint_for_user_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture, bad_checkpoints: dict[str, Path],
    ckpt: Path, kind: str, message: str,
) -> None:
    path = bad_checkpoints[kind]
    source = tmp_path / "in.txt"
    source.write_text("the cat\n")
    user_error(run(capsys, "translate", "--checkpoint", str(path), "--input", str(source)),
               f"{path}: {message}")
    user_error(run(capsys, "evaluate", "--checkpoint", str(path), "--src", str(source),
                   "--ref", str(source)), message)
    output = tmp_path / "avg.ckpt"
    user_error(run(capsys, "average", "--inputs", str(ckpt), str(path), "--output",
                   str(output)), message, alone=False)
    assert not output.exists()


class _RunsCode:
    """Pickles to a call of os.system: unpickling it would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_checkpoints_never_run_code(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    spm: Path, ckpt: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    good = torch.load(ckpt, weights_only=True)
    torch.save({**good, "transformer_mt": {**good["transformer_mt"], "x": _RunsCode(marker)}},
               evil)
    source = tmp_path / "in.txt"
    source.write_text("the cat\n")
    refused = f"{evil}: refused to load: the file holds objects other than tensors"
    user_error(run(capsys, "translate", "--checkpoint", str(evil), "--input", str(source)),
               refused)
    user_error(run(capsys, "average", "--inputs", str(evil), str(ckpt), "--output",
                   str(tmp_path / "avg.ckpt")), refused, alone=False)
    user_error(run(capsys, "evaluate", "--checkpoint", str(evil), "--src", str(source),
                   "--ref", str(source)), refused)
    user_error(run(capsys, "validate", *tiny_fit_args(tmp_path / "run", spm)[1:],
                   "--ckpt_path", str(evil)), refused, alone=False)
    assert not marker.exists()
    # the file is live: unpickling it for real does run the command
    torch.load(evil, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------- Lightning commands
def test_unknown_config_keys_and_values_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, spm: Path
) -> None:
    fit = tiny_fit_args(tmp_path, spm)
    line = user_error(run(capsys, *fit, "--model.no_such_option", "3"),
                      "unrecognized arguments: --model.no_such_option 3")
    assert line.endswith("(see `transformer-mt fit --help`)")
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  no_such_option: 3\n")
    user_error(run(capsys, *fit, "--config", str(config)), "no_such_option")
    user_error(run(capsys, *fit, "--trainer.max_steps", "abc"),
               'Parser key "trainer.max_steps": Expected a <class \'int\'>. Got value: abc')
    user_error(run(capsys, *fit, "--data.spm_model_type", "wordpiece"),
               "data.spm_model_type='wordpiece': use 'unigram' or 'bpe'", alone=False)
    user_error(run(capsys, *fit, "--model.val_beam_size", "0"),
               "model.val_beam_size=0: must be >= 1", alone=False)
    user_error(run(capsys, *fit, "--trainer.devices", "abc"),
               "trainer: `devices` selected with `CPUAccelerator` should be an int > 0",
               alone=False)
    rc, out, _ = run(capsys, "fit", "--help")
    assert rc == 0 and "--ckpt_path" in out and "--data.max_tokens" in out


def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture, spm: Path) -> None:
    fit = tiny_fit_args(tmp_path / "run", spm)
    missing = tmp_path / "nowhere.en"
    user_error(run(capsys, *fit, "--data.train", json.dumps([str(tmp_path / "nowhere.{lang}")])),
               f"{missing}: no such file", alone=False)
    (tmp_path / "bad.en").write_bytes(b"Hello\nGr\xfc\xdfe\n")
    (tmp_path / "bad.de").write_text("Hallo\nGrüße\n")
    user_error(run(capsys, *fit, "--data.train", json.dumps([str(tmp_path / "bad.{lang}")])),
               f"{tmp_path / 'bad.en'}: line 2: invalid UTF-8", alone=False)


def test_errors_inside_lightning_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, spm: Path, bad_checkpoints: dict[str, Path]
) -> None:
    """UserErrors raised inside Trainer.fit (data setup, checkpoint loading) pass Lightning's
    error handling unchanged and end as one line."""
    fit = tiny_fit_args(tmp_path / "run", spm, "--trainer.max_steps", "1")
    user_error(run(capsys, *fit, "--data.max_tokens", "20"),
               "max_tokens=20 is smaller than the longest sentence pair", alone=False)
    for kind, message in (("truncated", "not a readable checkpoint (truncated or corrupt"),
                          ("bare_state_dict", "not a transformer-mt checkpoint")):
        path = bad_checkpoints[kind]
        user_error(run(capsys, *fit, "--ckpt_path", str(path)), f"{path}: {message}",
                   alone=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    user_error(run(capsys, *fit, "--checkpoint.dirpath", str(a_file / "checkpoints")),
               f"{a_file / 'checkpoints'}: cannot create the folder (Not a directory)",
               alone=False)


# ---------------------------------------------------------------- determinism, streaming
def test_translate_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    ckpt: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat sleeps\na big red dog runs over the house\n\nder Hund\n")
    for beam in ("1", "4"):
        first = translate(capsys, ckpt, "--input", str(source), "--beam-size", beam)
        second = translate(capsys, ckpt, "--input", str(source), "--beam-size", beam)
        assert first[0] == 0 and first == second


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """One line of the child's stdout, or fail after `timeout` seconds."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0 and selector.select(remaining), f"no line in {timeout}s: {data!r}"
        chunk = os.read(process.stdout.fileno(), 1)
        assert chunk, "translate exited early"
        data += chunk
    return data.decode("utf-8")


def test_stream_answers_each_line_of_a_slow_pipe(ckpt: Path) -> None:
    """A real process behind real pipes: each translation must arrive before the next line is
    even written, so neither input nor output may be held in a buffer."""
    process = subprocess.Popen(
        [sys.executable, "-m", "transformer_mt.commands.main", "translate",
         "--checkpoint", str(ckpt), "--stream", "--beam-size", "2", "--max-len-b", "8"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )
    try:
        answers = []
        for line in ["the cat sleeps", "", "der Hund läuft"]:
            process.stdin.write((line + "\n").encode())
            process.stdin.flush()
            answers.append(_read_line(process, timeout=60))
            time.sleep(0.2)  # a slow producer
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        assert process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert answers[0].strip() and answers[1] == "\n" and answers[2].strip()


@pytest.fixture(autouse=True, scope="module")
def _nondeterministic_afterwards() -> Iterator[None]:
    """`trainer.deterministic` in the demo runs switches torch to deterministic kernels."""
    yield
    torch.use_deterministic_algorithms(False)


def test_closed_output_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """`transformer-mt ... | head` must stop quietly when the reader goes away."""
    text = tmp_path / "t.txt"
    text.write_text("a b c d\n" * 50, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "transformer_mt.commands.main", "evaluate", "--hyp", str(text),
         "--ref", str(text), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    assert proc.returncode == 141
