"""`transformer-mt` entry point: which module of this package runs which subcommand.

Training commands (fit/validate/test/predict in `train`, and `prepare`) go to LightningCLI; the
user commands (translate, evaluate, average, export, attention, plot, serve) are plain argparse
in one module each, named after the command, so they start fast and never import Lightning. A
`UserError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from transformer_mt.errors import UserError

LIGHTNING_COMMANDS = {
    "prepare": "build a config's vocabulary and token arrays once, before fit",
    "fit": "train a model (LightningCLI)",
    "validate": "score a checkpoint on the validation set (LightningCLI)",
    "test": "score a checkpoint on the test set (LightningCLI)",
    "predict": "translate the predict set through Lightning, writing a file (LightningCLI)",
}

# command -> one-line help; the command's module is `transformer_mt.commands.<command>`, with
# add_arguments(parser) and run(args) -> int
USER_COMMANDS = {
    "translate": "translate text with a checkpoint",
    "evaluate": "sacreBLEU scores of translations, a checkpoint or a test set; significance",
    "average": "average the weights of several checkpoints",
    "export": "export a checkpoint to Hugging Face Marian / CTranslate2",
    "attention": "draw attention heatmaps for one sentence, or write all the model computes "
                 "for it (--json)",
    "plot": "draw a run's training curves (loss, BLEU, learning rate) as a PNG",
    "serve": "translate over HTTP (LibreTranslate API, web page)",
}


def command_module(name: str) -> str:
    """The module that implements user command `name`."""
    return f"{__package__}.{name}"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse reporting a usage mistake (unknown option, invalid choice, missing argument) in
    one line, like every other user error: its usual usage block buries the message. The
    subcommand parsers are of this class too (argparse creates them with the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"transformer-mt: error: {message} (see `{self.prog} --help`)\n")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that states each option's default, except where there is none to state: a flag
    (False), an option whose absence means something the help text says itself (None), or a
    help that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="transformer-mt",
        description="Train and run the encoder-decoder Transformer (Vaswani et al., 2017) "
        "for machine translation.",
        epilog="Training: transformer-mt fit --config configs/demo.yaml "
        "(see `transformer-mt fit --help`).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, help_text in USER_COMMANDS.items():
        command = sub.add_parser(
            name, help=help_text, description=help_text,
            formatter_class=DefaultsHelpFormatter,
        )
        command.set_defaults(module=command_module(name))
        importlib.import_module(command_module(name)).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "prepare":
            from transformer_mt.commands.prepare import run_prepare

            return run_prepare(argv[1:])
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from transformer_mt.commands.train import run_lightning_cli

            return run_lightning_cli(argv)
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        module = importlib.import_module(args.module)
        status = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler, not at exit
        return status
    except UserError as exc:
        print(f"transformer-mt: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("transformer-mt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
