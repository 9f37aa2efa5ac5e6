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
