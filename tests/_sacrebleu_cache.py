"""A sacreBLEU cache folder ($SACREBLEU) filled without a network, in sacreBLEU's own layout.

What `sacrebleu -t NAME -l PAIR` leaves in the cache after a download is the archive and its
unpacked raw files under `NAME/raw/`; on first use sacreBLEU turns those into its text files.
These helpers write the same raw files (WMT's pre-2021 "fake SGML" for `wmt14`, `wmt14/full`;
the WMT21+ XML for `wmt22`) from given lines, at the paths sacreBLEU's own metadata names, and a
placeholder archive, which sacreBLEU takes as downloaded (it fetches only a missing or empty
file). Everything after that, the parsing included, is sacreBLEU's code.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape


def _dataset(name: str):
    from sacrebleu.dataset import DATASETS

    return DATASETS[name]


def _raw_dir(cache: Path, name: str) -> Path:
    """`$SACREBLEU/NAME/raw`, with the archive sacreBLEU looks for in place."""
    dataset = _dataset(name)
    raw = cache / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for url in dataset.data:
        (raw / dataset._get_tarball_filename(url)).write_bytes(b"filled offline by tests\n")
    return raw


def _raw_files(name: str, langpair: str) -> list[str]:
    entry = _dataset(name).langpairs[langpair]
    return [entry["path"]] if isinstance(entry, dict) else list(entry)


def fill_sgml(cache: Path, name: str, langpair: str, sources: list[str],
              references: list[str]) -> None:
    """Source and reference .sgm files of a pre-2021 WMT set (one document, news, original
    language the source's)."""
    raw = _raw_dir(cache, name)
    src_lang = langpair.split("-")[0]
    src_path, ref_path = _raw_files(name, langpair)[:2]
    for kind, path, lines in (("src", src_path, sources), ("ref", ref_path, references)):
        body = "".join(f'<seg id="{i}">{line}</seg>\n' for i, line in enumerate(lines, 1))
        target = raw / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f'<{kind}set setid="test" srclang="any">\n<doc sysid="{kind}" '
                          f'docid="doc1" genre="news" origlang="{src_lang}">\n{body}</doc>\n'
                          f"</{kind}set>\n", encoding="utf-8")


def fill_xml(cache: Path, name: str, langpair: str, sources: list[str],
             references: dict[str, list[str]]) -> None:
    """The one XML file of a WMT21+ set, with a reference per translator ("A", "B", ...)."""
    src_lang, tgt_lang = langpair.split("-")

    def segments(lines: list[str]) -> str:
        return "".join(f'<seg id="{i}">{escape(line)}</seg>' for i, line in enumerate(lines, 1))

    refs = "".join(f'<ref lang="{tgt_lang}" translator="{who}"><p>{segments(lines)}</p></ref>'
                   for who, lines in references.items())
    target = _raw_dir(cache, name) / _raw_files(name, langpair)[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<dataset id="test"><collection id="general">'
        f'<doc id="doc1" origlang="{src_lang}"><src lang="{src_lang}"><p>{segments(sources)}'
        f"</p></src>{refs}</doc></collection></dataset>\n", encoding="utf-8")


def offline_env(cache: Path) -> dict[str, str]:
    """The environment of a `transformer-mt` subprocess that reads `cache` and can reach no
    server: sacreBLEU's downloads go to a proxy on a closed local port and fail at once, even
    where a network exists."""
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    return {**env, "SACREBLEU": str(cache), "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9"}
