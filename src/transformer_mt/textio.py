"""Reading and writing line-aligned text files safely.

Every command that reads text goes through `read_lines`, so bad input is reported the same way
everywhere (file and line, what to do), and every file we write goes through `atomic_write`, so a
crash never leaves a partial output that looks complete.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from transformer_mt.errors import UserError

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


def check_readable(path: str | os.PathLike) -> Path:
    """Fail with a clear message unless `path` is an existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise UserError(f"{p}: permission denied")
    return p


def open_binary(path: str | os.PathLike) -> IO[bytes]:
    """Open a plain, .gz, .xz or .bz2 file for reading bytes."""
    p = check_readable(path)
    return _OPENERS.get(p.suffix, open)(p, "rb")


def clean_line(raw: bytes, name: str, lineno: int) -> str:
    """Decode one line as UTF-8 and drop the line terminator (LF or CRLF).

    Control characters other than tab (NUL included) become spaces so a stray byte can neither
    split a line nor reach the tokenizer; the line count never changes.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{name}: line {lineno}: invalid UTF-8 at byte {exc.start}; "
            "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    text = text.rstrip("\n").rstrip("\r")
    return _CONTROL.sub(" ", text)  # a regex: a per-character loop costs minutes on WMT


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the lines of a (possibly compressed) UTF-8 file; '-' reads standard input."""
    if str(path) == "-":
        yield from iter_stream(sys.stdin.buffer, "<stdin>")
        return
    with open_binary(path) as handle:
        yield from iter_stream(handle, str(path))


def iter_stream(handle: IO[bytes], name: str) -> Iterator[str]:
    """Yield cleaned lines from a binary stream, one at a time (works on slow pipes)."""
    for lineno, raw in enumerate(iter(handle.readline, b""), start=1):
        yield clean_line(raw, name, lineno)


def read_lines(path: str | os.PathLike, allow_empty: bool = False) -> list[str]:
    """All lines of a file; an empty file is an error unless `allow_empty`."""
    lines = list(iter_lines(path))
    if not lines and not allow_empty:
        raise UserError(f"{path}: file is empty")
    return lines


def check_same_length(a: list, b: list, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise UserError(
            f"line counts differ: {name_a} has {len(a)} lines, {name_b} has {len(b)}; "
            "the files must be parallel, line by line"
        )


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it into place on success.

    A crash or error while writing leaves no file (or the previous one) at `path`.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise UserError(f"{target}: cannot write: {directory} {problem}")
    if target.is_dir():
        raise UserError(f"{target}: is a directory, expected a file path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UserError(f"{target}: cannot write ({exc.strerror})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=None if "b" in mode else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`data` into `path` through `atomic_write`; a write that fails (disk full, quota) is a
    one-line UserError naming the file, like every other failure to write."""
    try:
        with atomic_write(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
