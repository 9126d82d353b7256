"""`transformer-mt translate`, run in-process through `cli.main` on a tiny random checkpoint."""

from __future__ import annotations

import io
import os
import select
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests._tiny_ckpt import make_tiny_checkpoint
from transformer_mt.commands import main as cli
from transformer_mt.commands.translate import format_results
from transformer_mt.inference.loaded_model import LoadedModel, load_for_inference
from transformer_mt.inference.search import translate_lines
from transformer_mt.inference.translator import Translator, clean_text

AWKWARD_LINES = [
    "The cat sleeps under the big tree.",
    "",
    "   \t  ",
    " ".join(["word"] * 2000),  # far over max_positions: truncated, counted, still one line
    "Привет, как дела?",
    "你好，世界。",
    "مرحبا بالعالم",
    "🙂 🚀 😀 emoji",
    "A small red dog runs quickly over the house.",
    "der Hund",
]


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny_ckpt")
    return make_tiny_checkpoint(directory / "tiny.ckpt", directory / "spm")


@pytest.fixture(scope="session")
def loaded(ckpt: Path) -> LoadedModel:
    return load_for_inference(ckpt)


def translate(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["translate", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_by_one(loaded: LoadedModel, lines: list[str], **options) -> list[str]:
    """Reference outputs: each line translated alone, so batching and sorting can't matter."""
    out = []
    for line in lines:
        result = translate_lines(loaded, [line], batch_tokens=4096, **options)
        out += format_results(Translator(loaded), result.hypotheses, 0, 1)
    return out


def test_awkward_input_keeps_line_count_and_order(
    tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path, loaded: LoadedModel
) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(("\r\n".join(AWKWARD_LINES) + "\r\n").encode("utf-8"))
    rc, out, err = translate(capsys, "--checkpoint", str(ckpt), "--input", str(source),
                             "--beam-size", "2", "--batch-tokens", "40", "--max-len-b", "10")
    assert rc == 0, err
    assert out.endswith("\n") and "\r" not in out
    lines = out[:-1].split("\n")
    assert len(lines) == len(AWKWARD_LINES)
    assert lines[1] == lines[2] == ""
    assert all(lines[i] for i in range(len(lines)) if i not in (1, 2))
    expected = one_by_one(loaded, AWKWARD_LINES, beam_size=2, max_len_b=10)
    assert len(set(expected)) >= 6, "outputs must differ between lines to check their order"
    assert lines == expected
    assert "1 input line(s) longer than 63 tokens were truncated" in err


def test_stdin_to_stdout_and_output_file_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, ckpt: Path
) -> None:
    text = "The dog eats.\r\n\r\nПривет мир\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    rc, out, _ = translate(capsys, "--checkpoint", str(ckpt), "--quiet", "--beam-size", "1")
    assert rc == 0
    assert len(out.split("\n")) == 4 and out.split("\n")[1] == ""
    source = tmp_path / "in.txt"
    source.write_bytes(text.encode())
    target = tmp_path / "out.txt"
    rc, printed, _ = translate(capsys, "--checkpoint", str(ckpt), "--input", str(source),
                               "--output", str(target), "--beam-size", "1")
    assert rc == 0 and printed == ""
    assert target.read_text(encoding="utf-8") == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


@pytest.mark.parametrize("stream", [False, True])
def test_failed_run_leaves_no_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path, stream: bool
) -> None:
    """Bad UTF-8 on line 3: in stream mode lines 1-2 are already translated and written to
    the temporary file when the error comes; neither mode may leave a new or partial file."""
    source = tmp_path / "in.txt"
    source.write_bytes(b"The cat.\nThe dog.\n\xff\xfe broken\nlast\n")
    fresh, existing = tmp_path / "fresh.txt", tmp_path / "existing.txt"
    existing.write_text("previous result\n")
    for target in (fresh, existing):
        rc, out, err = translate(capsys, "--checkpoint", str(ckpt), "--input", str(source),
                                 "--output", str(target), *(["--stream"] if stream else []))
        assert rc == 2
        assert err.count("\n") == 1 and "line 3" in err and "UTF-8" in err
    assert not fresh.exists()
    assert existing.read_text() == "previous result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt", "in.txt"]


def _read_line(fd: int, timeout: float = 30.0) -> str:
    """One line from a pipe, failing if it does not arrive in time (byte by byte, so the
    next line stays unread)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no complete output line within {timeout}s (got {data!r})"
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8")


def test_stream_writes_each_line_before_the_next_is_read(
    monkeypatch: pytest.MonkeyPatch, ckpt: Path, loaded: LoadedModel
) -> None:
    """stdin and stdout are pipes; each translation must come out while the input is still
    open, i.e. before the program could have read anything more."""
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    fake_stdout = io.TextIOWrapper(open(out_write, "wb"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(open(in_read, "rb")))
    monkeypatch.setattr(sys, "stdout", fake_stdout)
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(cli.main(
        ["translate", "--checkpoint", str(ckpt), "--stream", "--beam-size", "2"])), daemon=True)
    lines = ["The cat sleeps.", "", "你好，世界。"]
    received = []
    try:
        worker.start()
        for line in lines:
            os.write(in_write, (line + "\r\n").encode("utf-8"))
            received.append(_read_line(out_read))
            assert worker.is_alive()  # still waiting for input: the line was not held back
    finally:
        os.close(in_write)
        worker.join(timeout=30)
        fake_stdout.close()
    assert codes == [0]
    assert _read_line(out_read) == ""  # nothing after the three lines
    os.close(out_read)
    assert received == [t + "\n" for t in one_by_one(loaded, lines, beam_size=2)]


def test_nbest_format(tmp_path: Path, capsys: pytest.CaptureFixture, ckpt: Path,
                      loaded: LoadedModel) -> None:
    lines = ["The cat sleeps.", "", "Привет, как дела?"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, out, _ = translate(capsys, "--checkpoint", str(ckpt), "--input", str(source),
                           "--beam-size", "3", "--nbest", "3")
    assert rc == 0
    rows = [line.split("\t") for line in out[:-1].split("\n")]
    assert len(rows) == 3 * len(lines) and all(len(r) == 3 for r in rows)
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    best = one_by_one(loaded, lines, beam_size=3)
    for i in (0, 2):
        group = rows[3 * i : 3 * i + 3]
        scores = [float(r[1]) for r in group]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
        assert group[0][2] == best[i]
    assert rows[3:6] == [["1", "0.0000", ""], ["1", "-inf", ""], ["1", "-inf", ""]]


def test_sampling_is_reproducible_with_seed(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            ckpt: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("The cat sleeps.\nA big dog.\n", encoding="utf-8")
    args = ["--checkpoint", str(ckpt), "--input", str(source), "--sampling", "--nbest", "2",
            "--top-k", "20", "--top-p", "0.9", "--temperature", "1.5"]
    first = translate(capsys, *args, "--seed", "1")
    assert first[0] == 0
    assert translate(capsys, *args, "--seed", "1") == first
    assert translate(capsys, *args, "--seed", "2")[1] != first[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beam-size", "0"], "--beam-size"),
        (["--sampling", "--temperature", "0"], "--temperature"),
        (["--sampling", "--top-p", "0"], "--top-p"),
        (["--sampling", "--top-p", "1.5"], "--top-p"),
        (["--sampling", "--top-k", "-1"], "--top-k"),
        (["--batch-tokens", "0"], "--batch-tokens"),
        (["--nbest", "5"], "--nbest"),
        (["--nbest", "0"], "--nbest"),
        (["--max-len-b", "-1"], "--max-len-b"),
        (["--input", "/nonexistent/in.txt"], "no such file"),
        (["--output", "/nonexistent/dir/out.txt"], "does not exist"),
    ],
)
def test_impossible_options_exit_2_with_one_line(
    capsys: pytest.CaptureFixture, ckpt: Path, argv: list[str], message: str
) -> None:
    rc, out, err = translate(capsys, "--checkpoint", str(ckpt), "--input", os.devnull, *argv)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("transformer-mt: error:") and message in err


def test_missing_checkpoint_and_cuda_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            ckpt: Path) -> None:
    rc, _, err = translate(capsys, "--checkpoint", str(tmp_path / "none.ckpt"))
    assert rc == 2 and err.count("\n") == 1 and "no such file" in err
    if not torch.cuda.is_available():
        rc, _, err = translate(capsys, "--checkpoint", str(ckpt), "--device", "cuda")
        assert rc == 2 and err.count("\n") == 1 and "CUDA" in err


def test_bf16_on_cpu_warns_and_runs_fp32(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         ckpt: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("The cat.\n", encoding="utf-8")
    base = ["--checkpoint", str(ckpt), "--input", str(source), "--device", "cpu"]
    rc, out, err = translate(capsys, *base, "--precision", "bf16")
    assert rc == 0 and "warning" in err and "bf16" in err
    assert translate(capsys, *base)[1] == out


def test_help_documents_the_nbest_format(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["translate", "--help"])
    assert exit_info.value.code == 0
    assert "INDEX<TAB>SCORE<TAB>TEXT" in capsys.readouterr().out


def test_clean_text_never_leaves_a_line_break() -> None:
    text = "a\nb\r\nc\rd\u2028e\x85f\x0bg\x0ch\x1ci\u2029j\x00k\x1al\tм你🙂"
    cleaned = clean_text(text)
    assert len(cleaned.splitlines()) == 1
    assert cleaned == "a b  c d e f g h i j k l\tм你🙂"
