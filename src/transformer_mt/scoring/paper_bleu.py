"""The paper's BLEU: tokenized, compound-split BLEU, as Vaswani et al. (2017) reported it.

The 27.3 / 28.4 of the paper's Table 2 come from tensor2tensor's `get_ende_bleu.sh`:
Moses `tokenizer.perl -l de` on the output, every hyphen between two non-blank characters split
into `##AT##-##AT##` on both sides ("for historical reasons", after Stanford's WMT'14 data, to be
comparable with GNMT and ConvS2S), then `multi-bleu.perl` on the tokens. That number counts
tokens the detokenized sacreBLEU standard does not (split compounds, separated punctuation,
`&quot;` entities), and typically lands 0.5 to 1 point above sacreBLEU on the same output: it
is only comparable with other tokenized, compound-split scores, never with sacreBLEU.

Nothing is re-implemented: the Moses tokenizer is sacremoses' port of `tokenizer.perl` (same
defaults: escaping on, no aggressive hyphen splitting) and BLEU is sacreBLEU's, with
`tokenize="none"` (the tokens are already there) and no smoothing (`multi-bleu.perl` has none).
The compound splitting is the script's one-line Perl substitution, `split_compounds`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from transformer_mt.scoring.metrics import check_parallel, score_entry

ATAT = "##AT##-##AT##"
# `perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g'` reads bytes, where \S is any byte but ASCII
# white space: re.ASCII gives Python's \S the same meaning (a no-break space is not a blank).
_HYPHEN_BETWEEN = re.compile(r"(\S)-(\S)", re.ASCII)
LABEL = "BLEU (the paper's: Moses-tokenized, compound-split; NOT comparable with sacreBLEU)"


def split_compounds(line: str) -> str:
    """The script's substitution: `rich-text` -> `rich ##AT##-##AT## text`.

    Like Perl's `s///g`, matches do not overlap, so in `a-b-c` the `b` taken by the first match
    cannot start a second one: `a ##AT##-##AT## b-c`. The published scores were computed so.
    """
    return _HYPHEN_BETWEEN.sub(rf"\1 {ATAT} \2", line)


def paper_tokenize(lines: Sequence[str], lang: str) -> list[str]:
    """Lines as `get_ende_bleu.sh` scores them: Moses-tokenized for `lang` (sacremoses, with
    `tokenizer.perl`'s defaults), then compound-split."""
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang=lang)
    return [split_compounds(tokenizer.tokenize(line, return_str=True, escape=True))
            for line in lines]


def paper_metric(references: Sequence[Sequence[str]] | None = None) -> Any:
    """sacreBLEU's BLEU on given tokens, unsmoothed: `multi-bleu.perl`'s arithmetic.
    `references` (already tokenized) are cached in it, as the paired tests need."""
    from sacrebleu.metrics import BLEU

    # force: the input is tokenized on purpose; sacreBLEU would warn that it looks tokenized
    return BLEU(tokenize="none", smooth_method="none", force=True, references=references)


def paper_signature(signature: str, lang: str) -> str:
    """sacreBLEU's signature of `paper_metric` (`tok:none|smooth:none`), plus what tokenized
    the text before it: Moses for `lang`, then the compound splitting."""
    return f"{signature}|pre:moses-{lang}+atat"


def paper_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], lang: str) -> dict[str, Any]:
    """The paper's BLEU of detokenized `hyps` against raw reference streams in language `lang`,
    as an entry like `metrics.score`'s, named with `LABEL`."""
    check_parallel(hyps, refs)
    metric = paper_metric()
    value = metric.corpus_score(paper_tokenize(hyps, lang),
                                [paper_tokenize(ref, lang) for ref in refs])
    return {**score_entry(metric, value), "name": LABEL,
            "signature": paper_signature(str(metric.get_signature()), lang)}
