"""The typed-field machinery: ``Param``, one definition of a setting (type, default, range, choices,
groups), and the one value parser behind it, by kind, never ``eval``.

``Param.parse`` turns a string (``--set``, ``key=value`` lines) or a YAML/JSON value into a checked
value; ``Param.parse_noted`` also says when a ``clamp`` setting was clamped. The hyperparameter table
(``hyperparameters.py``) and a scoring request's ``xai_parameters`` (``explain/params.py``) are made of these.

``strict=True`` parses as Azure's scoring code reads JSON: a number must be a JSON number, a list a JSON
list, null JSON's null, and a name is spelled exactly (no case folding, no spaces trimmed; strtobool's
words in any case, as strtobool reads them); without it strings are converted (``--set``, job YAMLs). A refused value raises ``FieldError``, a ``UsageError``
worded for the command line that also says which field, which value and why (``reason``), so a front end
that quotes values otherwise (``xai_parameters``: as JSON writes them) words the same decision itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, did_you_mean
from ..tasks import get_task

# Parameter groups: a task lists the groups that apply to it (Task.param_groups).
ALL = ("all",)
CLS = ("classification",)
DET = ("detection",)
SEG = ("segmentation",)

# Azure parses booleans with strtobool (in any case) and its log_* settings as Enable/Disable: the kind
# "strtobool" takes strtobool's words only (Azure's scoring flags), "bool" (hyperparameters) both.
STRTOBOOL_TRUE = ("y", "yes", "t", "true", "on", "1")
STRTOBOOL_FALSE = ("n", "no", "f", "false", "off", "0")
_TRUE = {*STRTOBOOL_TRUE, "enable", "enabled"}
_FALSE = {*STRTOBOOL_FALSE, "disable", "disabled"}
_NONE = {"none", "null", ""}


class FieldError(UsageError):
    """A value a ``Param`` refused. The message is the command line's; ``param``, ``raw`` and ``reason``
    (``missing``, ``invalid``: not of the kind, ``low``/``high``: out of range) let another front end word it."""

    def __init__(self, message: str, param: Param | None = None, raw=None, reason: str = "invalid"):
        super().__init__(message)
        self.param, self.raw, self.reason = param, raw, reason


@dataclass(frozen=True)
class Param:
    """One setting (a hyperparameter, an xai parameter): its type, default (one value, or one per group),
    range and groups."""

    name: str
    kind: str  # int, float, bool, strtobool, choice, model, grid ("3x2"), ints ("16,32,64")
    default: Any
    groups: tuple[str, ...] = ALL
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False  # None allowed ("none"/"null")
    azure: bool = True
    inference: bool = False
    """A deployment may change it without retraining (``--set`` on predict, serve, evaluate)."""
    help: str = ""
    aliases: tuple[str, ...] = ()
    """Azure's other spellings of this key (SDK v1 and its internal settings names)."""
    clamp: bool = False
    """Out of [low, high]: clamped with a warning (as Azure does) instead of refused."""

    def applies_to(self, task) -> bool:
        return any(group in get_task(task).param_groups for group in self.groups)

    def default_for(self, task):
        """The default for ``task``: the task's own (Azure's per-task values), else its most specific group's."""
        task = get_task(task)
        if self.name in task.hp_defaults:
            return task.hp_defaults[self.name]
        if isinstance(self.default, dict):
            return next((self.default[g] for g in reversed(task.param_groups) if g in self.default), None)
        return self.default

    def parse(self, raw, task: str | None = None, *, strict: bool = False):
        """Turn ``raw`` (a string from --set, or a YAML/JSON value) into a checked value; ``strict``: JSON
        types and exact names only (the module's docstring). ``FieldError`` when refused."""
        return self.parse_noted(raw, task, strict=strict)[0]

    def parse_noted(self, raw, task: str | None = None, *, strict: bool = False) -> tuple[Any, str | None]:
        """``(value, warning or None)``: ``parse``, saying when a ``clamp`` parameter was clamped."""
        is_choice = isinstance(raw, str) and raw.strip().lower() in (str(c).lower() for c in self.choices)
        spelled_none = not strict and isinstance(raw, str) and raw.strip().lower() in _NONE and not is_choice
        if raw is None or spelled_none:
            if self.optional:
                return None, None
            raise FieldError(f"{self.name} needs a value ({self.describe()})", self, raw, "missing")
        value = _PARSERS[self.kind](self, raw, strict)
        note = None
        if self.clamp and isinstance(value, (int, float)) and not isinstance(value, bool):
            clamped = min(max(value, self.low), self.high)
            if clamped != value:
                note = (f"warning: {self.name}={raw!r} is outside [{_fmt(self.low, '')}, {_fmt(self.high, '')}]: "
                        f"clamped to {clamped:g}, as Azure does")
                value = clamped
        self._check_range(value, raw)
        if self.kind == "model" and task is not None:
            from ..models.registry import get_spec

            value = get_spec(value, task).name
        return value, note

    def _check_range(self, value, raw) -> None:
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                continue
            too_low = self.low is not None and (item < self.low or (self.low_open and item == self.low))
            too_high = self.high is not None and (item > self.high or (self.high_open and item == self.high))
            if too_low or too_high:
                raise FieldError(f"{self.name}={raw!r} is out of range: it must be {self.describe()}", self, raw,
                                 "low" if too_low else "high")

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "grid":
            text = 'a grid "COLSxROWS" such as "3x2"'
        elif self.kind == "ints":
            text = "comma-separated positive integers such as 16,32,64"
        elif self.kind == "model":
            text = "a model name from `visionml models`"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "strtobool":
            text = "true or false, or one of " + "/".join(STRTOBOOL_TRUE) + " or " + "/".join(STRTOBOOL_FALSE)
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.low is not None or self.high is not None:
                lo = "(" if self.low_open else "["
                hi = ")" if self.high_open else "]"
                text += f" in {lo}{_fmt(self.low, '-inf')}, {_fmt(self.high, 'inf')}{hi}"
        return text + (", or none" if self.optional else "")


def _fmt(x, missing):
    return missing if x is None else f"{x:g}"


def _parse_int(p: Param, raw, strict: bool = False) -> int:
    if isinstance(raw, bool):
        raise FieldError(f"{p.name}={raw!r} is not an integer", p, raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and not strict and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        return int(raw)
    raise FieldError(f"{p.name}={raw!r} is not an integer ({p.describe()})", p, raw)


def _parse_float(p: Param, raw, strict: bool = False) -> float:
    if isinstance(raw, bool):
        raise FieldError(f"{p.name}={raw!r} is not a number", p, raw)
    try:
        if strict and not isinstance(raw, (int, float)):
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError):
        raise FieldError(f"{p.name}={raw!r} is not a number ({p.describe()})", p, raw) from None
    if not math.isfinite(value):
        raise FieldError(f"{p.name}={raw!r} must be a finite number", p, raw)
    return value


def _parse_bool(p: Param, raw, strict: bool = False) -> bool:
    return _boolean(p, raw, strict, int, _TRUE, _FALSE, "true or false (or 1/0)")


def _parse_strtobool(p: Param, raw, strict: bool = False) -> bool:
    """As Azure's scoring code reads a flag: a boolean, the number 0 or 1 (JSON's 1 and 1.0 are one
    number), or one of strtobool's words in any case."""
    return _boolean(p, raw, strict, (int, float), STRTOBOOL_TRUE, STRTOBOOL_FALSE, p.describe())


def _boolean(p: Param, raw, strict: bool, numbers, true_words, false_words, hint: str) -> bool:
    """A boolean, the number 0 or 1 (of the ``numbers`` types), or one of the words."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, numbers) and raw in (0, 1):
        return bool(raw)
    text = _word(raw, strict)
    if text in true_words:
        return True
    if text in false_words:
        return False
    raise FieldError(f"{p.name}={raw!r} is not a boolean: use {hint}", p, raw)


def _word(raw, strict: bool) -> str | None:
    """``raw`` as a boolean word is compared: lower case, trimmed; ``strict``: untrimmed, and strings only."""
    if strict:
        return raw.lower() if isinstance(raw, str) else None
    return str(raw).strip().lower()


def _parse_choice(p: Param, raw, strict: bool = False):
    for choice in p.choices:
        if strict and type(raw) is type(choice) and raw == choice:
            return choice
        if not strict and str(raw).strip().lower() == str(choice).lower():
            return choice
    hint = did_you_mean(str(raw).strip().lower(), p.choices, n=2, cutoff=0.5)
    raise FieldError(f"{p.name}={raw!r} is not valid: use {p.describe()}.{hint}", p, raw)


def _parse_model(p: Param, raw, strict: bool = False) -> str:
    if not isinstance(raw, str) or not raw.strip() or strict and raw != raw.strip().lower():
        raise FieldError(f"{p.name}={raw!r} is not a model name", p, raw)
    return raw.strip().lower()


def _parse_grid(p: Param, raw, strict: bool = False) -> tuple[int, int]:
    """Azure spells the grid "3x2" (v2) or "(3, 2)" (v1); YAML may give a list (JSON must: ``strict``)."""
    if isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        text = "" if strict else str(raw).strip().strip("()[]")
        parts = re.split(r"\s*[x,X]\s*", text)
    try:
        cols, rows = (_parse_int(p, v, strict) for v in parts)
    except (ValueError, UsageError):
        raise FieldError(f"{p.name}={raw!r} is not valid: use {p.describe()}", p, raw) from None
    if cols < 1 or rows < 1:
        raise FieldError(f"{p.name}={raw!r}: both grid sizes must be at least 1", p, raw)
    if cols * rows < 2:  # Azure refuses it too: one tile is the whole image again
        raise FieldError(f"{p.name}={raw!r}: a grid of one tile is the image itself; use at least 2 tiles "
                         f"(e.g. 2x1 or 3x2), or none for no tiling", p, raw)
    return cols, rows


def _parse_ints(p: Param, raw, strict: bool = False) -> tuple[int, ...]:
    if isinstance(raw, (list, tuple)):
        parts = list(raw)
    elif strict:
        raise FieldError(f"{p.name}={raw!r} is not a list of integers", p, raw)
    else:
        parts = re.split(r"[\s,]+", str(raw).strip().strip("()[]"))
    values = tuple(_parse_int(p, v, strict) for v in parts if str(v).strip())
    if not values:
        raise FieldError(f"{p.name}={raw!r} is empty: use {p.describe()}", p, raw)
    return values


_PARSERS = {"int": _parse_int, "float": _parse_float, "bool": _parse_bool, "strtobool": _parse_strtobool,
            "choice": _parse_choice, "model": _parse_model, "grid": _parse_grid, "ints": _parse_ints}

