"""`make demo`: train the demo model on the Tatoeba pairs in data/, draw its training curves,
average its last checkpoints, translate the held-out test set and score it, translate a few
everyday sentences the model never saw, and print the command that serves the model.

Every step is the same `transformer-mt` command a user would type (run in this process, so
Lightning and torch are imported once); the commands are echoed so they can be copied.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from transformer_mt.commands.main import main as transformer_mt
from transformer_mt.inference.translator import Translator
from transformer_mt.textio import read_lines

REPO = Path(__file__).resolve().parents[1]

# Everyday sentences that occur nowhere in data/ (tests/test_demo.py checks): what a visitor
# would type first.
EVERYDAY = [
    "Where is the train station?",
    "I would like a cup of coffee, please.",
    "My sister lives in Berlin.",
    "The weather is nice today.",
    "I forgot my umbrella at home.",
    "How much does this book cost?",
]


def run(argv: list[str]) -> None:
    print(f"\n$ transformer-mt {shlex.join(argv)}", flush=True)
    status = transformer_mt(argv)
    if status:
        sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", help="where checkpoints and outputs go")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: configs/demo.yaml's max_steps)")
    parser.add_argument("--average", type=int, default=2, help="checkpoints to average")
    parser.add_argument("--samples", type=int, default=8, help="translations to print")
    parser.add_argument("--test-lines", type=int, default=None,
                        help="translate only the first N test sentences (default: all)")
    parser.add_argument("--no-progress-bar", action="store_true", help="quiet training")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    data = REPO / "data"

    start = time.monotonic()
    fit = ["fit", "--config", str(REPO / "configs" / "demo.yaml"),
           "--trainer.default_root_dir", str(run_dir),
           "--trainer.logger.init_args.save_dir", str(run_dir),
           "--checkpoint.dirpath", str(run_dir / "checkpoints"),
           "--data.data_dir", str(data)]
    if args.steps is not None:
        every = max(1, args.steps // 4)
        fit += ["--trainer.max_steps", str(args.steps),
                "--trainer.val_check_interval", str(every),
                "--checkpoint.every_n_train_steps", str(every)]
    if args.no_progress_bar:
        fit += ["--trainer.enable_progress_bar", "false"]
    for old in (run_dir / "checkpoints").glob("*.ckpt"):  # a rerun starts a fresh model
        old.unlink()
    run(fit)
    trained = time.monotonic() - start
    curves = run_dir / "curves.png"
    run(["plot", str(run_dir), "--out", str(curves)])

    averaged = run_dir / "averaged.ckpt"
    run(["average", "--run-dir", str(run_dir / "checkpoints"), "--last", str(args.average),
         "--output", str(averaged)])
    source_file, reference_file = data / "test.en.xz", data / "test.de.xz"
    sources, references = read_lines(source_file), read_lines(reference_file)
    if args.test_lines is not None:
        sources, references = sources[: args.test_lines], references[: args.test_lines]
        source_file, reference_file = run_dir / "test.en", run_dir / "test.de"
        source_file.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
        reference_file.write_text("".join(r + "\n" for r in references), encoding="utf-8")
    hypotheses = run_dir / "test.hyp.de"
    run(["translate", "--checkpoint", str(averaged), "--input", str(source_file),
         "--output", str(hypotheses), "--beam-size", "4"])
    outputs = hypotheses.read_text(encoding="utf-8").splitlines()
    print("\nSample test translations (source / reference / transformer-mt):")
    for src, ref, hyp in list(zip(sources, references, outputs, strict=True))[: args.samples]:
        print(f"  EN  {src}\n  REF {ref}\n  OUT {hyp}\n")
    run(["evaluate", "--hyp", str(hypotheses), "--ref", str(reference_file)])

    print("\nEveryday sentences the model never saw (Python API: Translator):")
    translator = Translator.from_checkpoint(averaged, device="cpu")
    for sentence, translation in zip(EVERYDAY, translator.translate(EVERYDAY), strict=True):
        print(f"  EN  {sentence}\n  OUT {translation}\n")
    print(f"Trained in {trained / 60:.1f} min; total {(time.monotonic() - start) / 60:.1f} min.")
    print(f"Training curves (loss, validation BLEU, learning rate): {curves}")
    print("\nServe it (web page and LibreTranslate-compatible API on http://127.0.0.1:8080/):")
    print(f"  .venv/bin/transformer-mt serve --checkpoint {shlex.quote(str(averaged))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
