"""The ``visionml`` console command: one sub-command per module in ``visionml.commands``.

Each command module exposes ``add_parser(subparsers)`` (cheap: no heavy imports) and
``run(args) -> int``. Heavy libraries (torch, ...) are imported inside ``run`` so that
``visionml --help`` and ``visionml validate`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from contextlib import contextmanager

from . import __version__
from .errors import VisionMLError
from .fileio import check_output_file, check_output_folder, describe_os_error

# The order in which commands are listed in --help (DESIGN.md's order).
COMMANDS = (
    "validate", "convert", "sample_data", "train", "models", "run", "sweep_worker",
    "evaluate", "predict", "explain", "serve", "export", "featurize", "view", "audit", "weights",
)
# Output paths each command writes, checked before any work so that a folder given for a file, a
# path under a file or a folder without write permission fails at once, not after an hour of work:
# {command: ((dest, kind, example file name), ...)}.
OUTPUTS = {
    "predict": (("output", "file", "preds.jsonl"), ("labeled_dataset", "file", "labeled.jsonl")),
    "featurize": (("output", "file", "features.jsonl"),),
    "evaluate": (("output", "file", "metrics.json"), ("plots", "folder", "")),
    "explain": (("output", "file", "explanation.png"), ("attributions", "file", "attributions.npy")),
    "export": (("output", "folder", ""),),
    "sample-data": (("output", "folder", ""),),
    "train": (("output", "folder", ""),),
    "run": (("output", "folder", ""),),
    "sweep-worker": (("output", "folder", ""),),
    "audit": (("output", "folder", ""),),
    "weights": (("output", "folder", ""),),
}
SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a container stop), raised in the main thread like Ctrl-C so that every
    ``finally`` runs: temporary files are removed and the last complete checkpoint stays."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionml",
        description="Train, evaluate, serve, explain and export vision models from Azure "
        "AutoML-for-Images JSONL data, on your own machine.",
    )
    parser.add_argument("--version", action="version", version=f"visionml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:  # every command is part of visionml: one that fails to import is a broken install
        importlib.import_module(f"visionml.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_raises():
            _check_outputs(args)
            return int(args.func(args) or 0)
    except VisionMLError as exc:
        print(f"visionml {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"visionml {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return SIGTERM_EXIT
    except KeyboardInterrupt:
        print(f"visionml {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`visionml validate ... | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A file the command reads or writes failed in a way no module reported itself (disk
        # full, permissions): one line naming the file instead of a traceback.
        print(f"visionml {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1


def _check_outputs(args) -> None:
    for dest, kind, example in OUTPUTS.get(args.command, ()):
        value = getattr(args, dest, None)
        if value is None:
            continue
        option = f"--{dest.replace('_', '-')}"
        if kind == "file":
            check_output_file(value, option, example)
        else:
            check_output_folder(value, option)


@contextmanager
def _sigterm_raises():
    """While the command runs, SIGTERM raises ``Terminated`` in the main thread (as Ctrl-C raises
    KeyboardInterrupt) instead of killing the process mid-write. Left alone where someone else
    (an embedding program) already handles SIGTERM, or off the main thread."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
