"""Standard test sets by name (`wmt14`, `wmt14/full`, `wmt22`, ...), read through sacreBLEU.

sacreBLEU's own test-set API (`get_source_file`, `get_reference_files`) finds the source and
every reference of a set and language pair in its cache folder, `$SACREBLEU` (default
`~/.sacrebleu`), downloading and unpacking the set there the first time, so the text scored here
is byte for byte what `sacrebleu -t NAME -l PAIR` scores. Without a network the cache must hold
the set already; when it does not, the error says in one line how to fill it.

Mind the two newstest2014 sets: sacreBLEU's `wmt14` is the official, filtered 2,737 sentences of
en-de; the paper, tensor2tensor and fairseq score the full 3,003 (`wmt14/full`).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from transformer_mt.errors import UserError
from transformer_mt.textio import check_same_length, read_lines

# A download that hears nothing for this long fails (urllib has no timeout of its own, and a
# firewall that drops packets would otherwise hang the command).
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class NamedTestSet:
    """A sacreBLEU test set for one language pair: its source lines, every reference stream
    (line-parallel to the source), and the cache files they came from."""

    name: str
    langpair: str
    sources: list[str]
    references: list[list[str]]
    source_file: str
    reference_files: list[str]


def cache_folder() -> str:
    """Where sacreBLEU keeps test sets: `$SACREBLEU` as it was when sacreBLEU was imported."""
    from sacrebleu.utils import SACREBLEU_DIR

    return SACREBLEU_DIR


def check_name(name: str, langpair: str) -> None:
    """A UserError unless sacreBLEU knows test set `name` with language pair `langpair`."""
    import sacrebleu
    from sacrebleu.dataset import DATASETS

    if name not in DATASETS:
        raise UserError(f"sacreBLEU {sacrebleu.__version__} knows no test set {name!r} "
                        "(`sacrebleu --list` lists those it knows; a newer sacreBLEU may know "
                        "more)")
    pairs = DATASETS[name].langpairs
    if langpair not in pairs:
        raise UserError(f"test set {name} has no language pair {langpair!r}; it has "
                        f"{', '.join(sorted(pairs))} (choose with --langpair)")


@contextmanager
def _download_timeout() -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load_testset(name: str, langpair: str) -> NamedTestSet:
    """Source and references of `name` for `langpair` ("en-de"), from sacreBLEU's cache
    (downloaded there first when it is missing and a network is there)."""
    from sacrebleu.utils import get_reference_files, get_source_file

    check_name(name, langpair)
    try:
        with _download_timeout():
            source_file = get_source_file(name, langpair)
            reference_files = get_reference_files(name, langpair)
    except (OSError, SyntaxError, SystemExit) as exc:
        # OSError: no network (URLError), a timeout, or files missing from a partial cache;
        # SyntaxError: an unreadable XML file; SystemExit: sacreBLEU's own exit on a download
        # whose checksum is wrong (it has logged why).
        raise UserError(_missing(name, langpair, exc)) from None
    if not reference_files:
        raise UserError(f"sacreBLEU has no reference for {name} {langpair}")
    sources = read_lines(source_file)
    references = [read_lines(path) for path in reference_files]
    for path, reference in zip(reference_files, references, strict=True):
        check_same_length(sources, reference, source_file, path)
    return NamedTestSet(name=name, langpair=langpair, sources=sources, references=references,
                        source_file=source_file, reference_files=reference_files)


def _missing(name: str, langpair: str, exc: BaseException) -> str:
    """The one line that says what is missing and how to fill the cache."""
    reason = getattr(exc, "reason", None) or exc  # URLError keeps the cause in .reason
    if isinstance(exc, SystemExit):
        reason = "the download failed its checksum"
    folder = cache_folder()
    return (f"test set {name} {langpair} is not in sacreBLEU's cache {folder} (set SACREBLEU to "
            f"use another folder) and could not be fetched ({reason}); on a machine with "
            f"internet run `sacrebleu -t {name} -l {langpair} --echo src > /dev/null`, then copy "
            f"its ~/.sacrebleu/{name} to {folder}/{name}")
