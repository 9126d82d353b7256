"""Split the Tatoeba English-German export into the demo's train / valid / test files in data/.

The export (../shared/data/train_extra/tatoeba_deu.{en,de}.xz, 49,907 pairs) repeats sentences:
one English sentence often has several German translations and the other way round. A held-out
sentence must not occur in training on either side, so:

1. pairs are stripped, empty ones dropped and exact duplicates removed (first kept);
2. sentences are compared case-folded with runs of whitespace collapsed;
3. an English sentence can be held out only if none of its German translations is also the
   translation of another English sentence; such sentences are shuffled with a fixed seed and
   the first `--test` go to test, the next `--valid` to valid, one pair each (the first);
4. every pair with another English sentence is training data.

So no valid or test sentence, English or German, occurs in train, and valid and test are
disjoint. Output: data/{train,valid,test}.{en,de}.xz, byte-identical for the same input and seed.
"""

from __future__ import annotations

import argparse
import lzma
import random
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def key(sentence: str) -> str:
    """A sentence as compared for overlap: case-folded, whitespace runs collapsed."""
    return " ".join(sentence.casefold().split())


def split_pairs(
    english: list[str], german: list[str], n_test: int, n_valid: int, seed: int
) -> dict[str, list[tuple[str, str]]]:
    """{train, valid, test} pair lists following the module docstring."""
    pairs = list(dict.fromkeys(
        (e.strip(), g.strip()) for e, g in zip(english, german, strict=True)
        if e.strip() and g.strip()
    ))
    english_of: dict[str, set[str]] = defaultdict(set)
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e, g in pairs:
        english_of[key(g)].add(key(e))
        groups[key(e)].append((e, g))
    eligible = sorted(k for k, group in groups.items()
                      if all(english_of[key(g)] == {k} for _, g in group))
    random.Random(seed).shuffle(eligible)
    held = {"test": eligible[:n_test], "valid": eligible[n_test:n_test + n_valid]}
    if len(held["valid"]) < n_valid:
        raise SystemExit(f"split_tatoeba: only {len(eligible)} sentences can be held out")
    out = {name: [groups[k][0] for k in keys] for name, keys in held.items()}
    held_out = set(held["test"]) | set(held["valid"])
    out["train"] = [(e, g) for e, g in pairs if key(e) not in held_out]
    return out


def write_xz(path: Path, lines: list[str]) -> None:
    """Deterministic .xz (no timestamps in the format), LF line ends."""
    path.write_bytes(lzma.compress("".join(line + "\n" for line in lines).encode("utf-8"),
                                   preset=9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", default=str(SHARED / "train_extra" / "tatoeba_deu"),
                        help="path prefix of the export's .en.xz / .de.xz files")
    parser.add_argument("--out", default=str(REPO / "data"), help="output folder")
    parser.add_argument("--test", type=int, default=1000, help="test sentences")
    parser.add_argument("--valid", type=int, default=500, help="validation sentences")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    sides = []
    for lang in ("en", "de"):
        path = Path(f"{args.export}.{lang}.xz")
        if not path.is_file():
            print(f"split_tatoeba: {path}: no such file", file=sys.stderr)
            return 2
        sides.append(lzma.decompress(path.read_bytes()).decode("utf-8").splitlines())
    splits = split_pairs(*sides, n_test=args.test, n_valid=args.valid, seed=args.seed)
    out = Path(args.out)
    for name, pairs in splits.items():
        for index, lang in enumerate(("en", "de")):
            write_xz(out / f"{name}.{lang}.xz", [pair[index] for pair in pairs])
        print(f"{name}: {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
