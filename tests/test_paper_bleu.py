"""The paper's tokenized BLEU (`scoring.paper_bleu`): tensor2tensor's get_ende_bleu.sh, that is
Moses tokenization, `##AT##-##AT##` compound splitting and multi-bleu.perl, on examples worked
out by hand; and `evaluate --paper-bleu`, which prints it beside sacreBLEU, labelled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sacrebleu

from transformer_mt.commands.main import main
from transformer_mt.scoring.paper_bleu import LABEL, paper_bleu, paper_tokenize, split_compounds


@pytest.mark.parametrize("line, split", [
    ("rich-text format", "rich ##AT##-##AT## text format"),
    # Perl's s///g does not overlap its matches: the `b` of the first one cannot start another
    ("a-b-c", "a ##AT##-##AT## b-c"),
    ("a-b c-d", "a ##AT##-##AT## b c ##AT##-##AT## d"),
    ("Über-Ich und U-Bahn", "Über ##AT##-##AT## Ich und U ##AT##-##AT## Bahn"),
    # a hyphen with a blank on either side is no compound
    ("2 - 3 , x- y , x -y , -", "2 - 3 , x- y , x -y , -"),
    # the script reads bytes: a no-break space is not a blank to Perl's \S, so it splits
    ("x\u00a0-y", "x\u00a0 ##AT##-##AT## y"),
])
def test_compound_splitting_is_the_scripts_perl_substitution(line: str, split: str) -> None:
    assert split_compounds(line) == split


def test_moses_tokenization_then_splitting() -> None:
    """tokenizer.perl's defaults: punctuation split off, `"` `'` `&` escaped as entities,
    hyphenated words kept whole (no -a) until the compound splitting."""
    assert paper_tokenize(['Das "Hochleistungs-Rechner"-Angebot kostet 5 € & mehr.'], "de") == [
        "Das &quot; Hochleistungs ##AT##-##AT## Rechner &quot; -Angebot kostet 5 € &amp; mehr ."]
    # language-specific rules: German keeps "z.B." as one token (a non-breaking prefix)
    assert paper_tokenize(["Er kam z.B. gestern."], "de") == ["Er kam z.B. gestern ."]


def test_score_of_a_hand_checked_example() -> None:
    """hyp `Der Mehrweg-Becher ist leer.` against ref `Der Mehrweg-Becher war leer.`:
    tokenized and split, both have 7 tokens, `Der Mehrweg ##AT##-##AT## Becher ist|war leer .`
    matching 6/7 unigrams, 4/6 bigrams (all but `Becher ist`, `ist leer`), 2/5 trigrams and
    1/4 four-grams; no brevity penalty, so BLEU = (6/7 * 4/6 * 2/5 * 1/4) ** (1/4) = 48.89.
    sacreBLEU's 13a on the same text keeps `Mehrweg-Becher` whole: 30.21."""
    hyps, refs = ["Der Mehrweg-Becher ist leer."], [["Der Mehrweg-Becher war leer."]]
    result = paper_bleu(hyps, refs, "de")
    assert result["score"] == pytest.approx(100 * (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    assert f"{result['score']:.2f}" == "48.89"
    assert result["verbose"].startswith("85.7/66.7/40.0/25.0 (BP = 1.000 ratio = 1.000 "
                                        "hyp_len = 7 ref_len = 7)")
    assert result["name"] == LABEL and "NOT comparable with sacreBLEU" in LABEL
    assert result["signature"] == ("nrefs:1|case:mixed|eff:no|tok:none|smooth:none|version:"
                                   f"{sacrebleu.__version__}|pre:moses-de+atat")
    assert f"{sacrebleu.corpus_bleu(hyps, refs).score:.2f}" == "30.21"


def test_no_smoothing_as_in_multi_bleu() -> None:
    """multi-bleu.perl has no smoothing: a corpus without a matching 4-gram scores 0, where
    sacreBLEU's default (exp smoothing) would not."""
    result = paper_bleu(["ein roter Hund läuft"], [["ein roter Hund schläft"]], "de")
    assert result["score"] == 0.0
    assert sacrebleu.corpus_bleu(["ein roter Hund läuft"], [["ein roter Hund schläft"]]).score > 0


def test_several_references_take_the_closest_length() -> None:
    hyps = ["Der Hund schläft ."]
    one = paper_bleu(hyps, [["Der Hund schläft jetzt ."]], "de")
    two = paper_bleu(hyps, [["Der Hund schläft jetzt ."], ["Der Hund schläft ."]], "de")
    assert math.isclose(two["score"], 100.0)
    assert one["score"] < 100.0
    assert two["signature"].startswith("nrefs:2|")


def test_evaluate_prints_it_beside_sacrebleu(tmp_path: Path, capsys) -> None:
    hyp, ref = tmp_path / "hyp.de", tmp_path / "ref.de"
    hyp.write_text("Der Mehrweg-Becher ist leer.\n", encoding="utf-8")
    ref.write_text("Der Mehrweg-Becher war leer.\n", encoding="utf-8")
    argv = ["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--paper-bleu"]
    assert main(argv) == 2  # the Moses rules need the target language
    assert "--paper-bleu needs the target language" in capsys.readouterr().err
    assert main([*argv, "--langpair", "en-de"]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert [block.split(" = ")[0] for block in blocks] == ["BLEU", "chrF2", LABEL]
    assert blocks[0].startswith("BLEU = 30.21 ")
    assert blocks[2].startswith(f"{LABEL} = 48.89 ")
    assert main([*argv, "--langpair", "en-de", "--json", "--metrics", "bleu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"bleu", "paper_bleu", "n_sentences"}
    assert result["paper_bleu"]["score"] == pytest.approx(48.8923, abs=1e-4)
