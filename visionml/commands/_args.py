"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, why: str | None = None):
    """An argparse type: a whole number >= ``minimum``, with ``why`` as the message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(why or f"must be at least {minimum}")
        return value

    return parse


DEVICE_HELP = "auto (default: cuda when available, else cpu), cpu, cuda or cuda:N"


def add_device(parser) -> None:
    """``--device``, as every command that runs a model takes it."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_datastore(parser, help: str = "map an azureml:// datastore to a local folder (repeatable)") -> None:
    """``--datastore NAME=DIR`` (repeatable), as every command that reads JSONL takes it."""
    parser.add_argument("--datastore", action="append", default=[], metavar="NAME=DIR", help=help)
