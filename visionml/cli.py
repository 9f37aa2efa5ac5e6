"""The ``visionml`` console command: one sub-command per module in ``visionml.commands``.

Each command module exposes ``add_parser(subparsers)`` (cheap: no heavy imports) and
``run(args) -> int``. Heavy libraries (torch, ...) are imported inside ``run`` so that
``visionml --help`` and ``visionml validate`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import VisionMLError

# The order in which commands are listed in --help (DESIGN.md's order).
COMMANDS = (
    "validate", "convert", "sample_data", "train", "models", "run", "sweep_worker",
    "evaluate", "predict", "explain", "serve", "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionml",
        description="Train, evaluate, serve, explain and export vision models from Azure "
        "AutoML-for-Images JSONL data, on your own machine.",
    )
    parser.add_argument("--version", action="version", version=f"visionml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"visionml.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet is absent, not a stub
            if exc.name == f"visionml.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VisionMLError as exc:
        print(f"visionml {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"visionml {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`visionml validate ... | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
