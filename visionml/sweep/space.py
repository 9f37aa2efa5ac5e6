"""Azure search-space expressions, parsed with a small grammar (never ``eval``).

Two spellings are accepted for each parameter, as Azure does:

* a string: ``"uniform(0.0001, 0.01)"``, ``"choice('sgd', 'adam')"``, ``"loguniform(1e-4, 1e-2)"``,
  ``"quniform(10, 50, 5)"``, ``"qloguniform(...)"``, ``"randint(5)"``, ``"normal(mu, sigma)"``, ...
  or a plain constant (``"sgd"``, ``0.01``);
* a mapping: ``{type: choice, values: [...]}``, ``{type: uniform, min_value: a, max_value: b}``,
  ``{type: quniform, min_value, max_value, q}``, ``{type: randint, upper}``, ``{type: normal, mu, sigma}``.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import VisionMLError, did_you_mean


@dataclass(frozen=True)
class Distribution:
    """One parameter's distribution. ``kind`` is Azure's name; ``args`` its numeric arguments."""

    kind: str
    args: tuple = ()
    values: tuple = ()  # for choice

    @property
    def is_discrete(self) -> bool:
        return self.kind in ("choice", "randint")

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "randint":
            return list(range(int(self.args[0])))
        raise VisionMLError(f"grid sampling needs choice() parameters, got {self.kind}(): "
                            "use sampling_algorithm random or bayesian, or list the values with choice()")

    def suggest(self, trial, name: str):
        """Draw this parameter from an Optuna trial."""
        k, a = self.kind, self.args
        if k == "choice":
            # Optuna stores categorical choices by value; keep YAML types (int, float, str, bool).
            return trial.suggest_categorical(name, list(self.values))
        if k == "uniform":
            return trial.suggest_float(name, a[0], a[1])
        if k == "loguniform":  # Azure: exp(uniform(min, max)), the bounds are logs
            return math.exp(trial.suggest_float(name + "__log", a[0], a[1]))
        if k == "quniform":
            return _q(trial.suggest_float(name + "__raw", a[0], a[1]), a[2])
        if k == "qloguniform":
            return _q(math.exp(trial.suggest_float(name + "__log", a[0], a[1])), a[2])
        if k == "randint":
            return trial.suggest_int(name, 0, int(a[0]) - 1)
        if k in ("normal", "lognormal", "qnormal", "qlognormal"):
            # Optuna has no normal prior: sample its quantile uniformly and map it through the inverse CDF.
            from statistics import NormalDist

            u = trial.suggest_float(name + "__quantile", 1e-6, 1 - 1e-6)
            x = NormalDist(a[0], a[1]).inv_cdf(u)
            if k.endswith("lognormal"):
                x = math.exp(x)
            return _q(x, a[2]) if k.startswith("q") else x
        raise AssertionError(k)


def _q(x: float, q: float):
    v = round(x / q) * q
    return int(v) if float(q).is_integer() and float(v).is_integer() else v


# name -> (argument names for the mapping form, number of args)
_KINDS = {
    "choice": None,
    "uniform": ("min_value", "max_value"),
    "loguniform": ("min_value", "max_value"),
    "quniform": ("min_value", "max_value", "q"),
    "qloguniform": ("min_value", "max_value", "q"),
    "randint": ("upper",),
    "normal": ("mu", "sigma"),
    "lognormal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "qlognormal": ("mu", "sigma", "q"),
}

_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)


def parse_expression(value: Any, where: str = "search_space") -> Distribution:
    """Parse one parameter's value (string, mapping or constant) into a Distribution."""
    if isinstance(value, dict):
        return _parse_mapping(value, where)
    if isinstance(value, str):
        m = _CALL.match(value)
        if m and m.group(1).lower() in _KINDS:
            return _parse_call(m.group(1).lower(), m.group(2), where)
        if m and m.group(1).lower() in ("range",):
            raise VisionMLError(f"{where}: range() is not supported; write choice(a, b, ...)")
        if m:
            hint = did_you_mean(m.group(1).lower(), _KINDS)
            raise VisionMLError(f"{where}: unknown distribution {m.group(1)!r}.{hint} "
                                f"Valid: {', '.join(_KINDS)}.")
    if isinstance(value, list):
        return Distribution("choice", values=tuple(value))
    return Distribution("choice", values=(value,))  # a constant is a one-value choice


def _literals(text: str, where: str) -> list:
    """Comma-separated Python literals (numbers, quoted strings, True/False/None) — literal_eval
    only accepts literals, so nothing is executed."""
    if not text.strip():
        return []
    try:
        node = ast.literal_eval(f"({text},)")
    except (ValueError, SyntaxError) as exc:
        raise VisionMLError(f"{where}: cannot parse arguments {text!r}: {exc}. "
                            "Use numbers and quoted strings, e.g. choice('sgd', 'adam').") from None
    out = []
    for v in node:
        if isinstance(v, (list, tuple)):  # choice(['a', 'b']) and choice(range) forms
            out.extend(v)
        else:
            out.append(v)
    return out


def _parse_call(kind: str, argtext: str, where: str) -> Distribution:
    args = _literals(argtext, where)
    if kind == "choice":
        if not args:
            raise VisionMLError(f"{where}: choice() needs at least one value")
        return Distribution("choice", values=tuple(args))
    return _numeric(kind, args, where)


def _parse_mapping(value: dict, where: str) -> Distribution:
    kind = str(value.get("type", "")).lower()
    if kind not in _KINDS:
        hint = did_you_mean(kind, _KINDS)
        raise VisionMLError(f"{where}: unknown or missing 'type' {value.get('type')!r}.{hint} "
                            f"Valid: {', '.join(_KINDS)}.")
    if kind == "choice":
        values = value.get("values")
        if not isinstance(values, list) or not values:
            raise VisionMLError(f"{where}: choice needs 'values: [..]' with at least one value")
        return Distribution("choice", values=tuple(values))
    names = _KINDS[kind]
    unknown = set(value) - {"type", *names}
    if unknown:
        raise VisionMLError(f"{where}: unknown key(s) {sorted(unknown)} for {kind}; expected {list(names)}")
    missing = [n for n in names if n not in value]
    if missing:
        raise VisionMLError(f"{where}: {kind} needs {', '.join(missing)}")
    return _numeric(kind, [value[n] for n in names], where)


def _numeric(kind: str, args: list, where: str) -> Distribution:
    names = _KINDS[kind]
    if len(args) != len(names):
        raise VisionMLError(f"{where}: {kind}() takes {len(names)} argument(s) ({', '.join(names)}), "
                            f"got {len(args)}")
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise VisionMLError(f"{where}: {kind}() arguments must be numbers, got {args}")
    args = [float(a) for a in args]
    if kind in ("uniform", "loguniform", "quniform", "qloguniform") and not args[0] < args[1]:
        raise VisionMLError(f"{where}: {kind}() needs min_value < max_value, got {args[0]} and {args[1]}")
    if kind == "randint" and args[0] < 1:
        raise VisionMLError(f"{where}: randint(upper) needs upper >= 1")
    if len(args) == 3 and args[2] <= 0:
        raise VisionMLError(f"{where}: q must be > 0")
    if kind in ("normal", "lognormal", "qnormal", "qlognormal") and args[1] <= 0:
        raise VisionMLError(f"{where}: sigma must be > 0")
    return Distribution(kind, args=tuple(args))


def parse_search_space(space: Any, where: str = "search_space") -> list[dict[str, Distribution]]:
    """Azure's ``search_space``: a list of sub-spaces (a single mapping is accepted as one)."""
    if space is None:
        return []
    if isinstance(space, dict):
        space = [space]
    if not isinstance(space, list) or not all(isinstance(s, dict) for s in space):
        raise VisionMLError(f"{where}: expected a list of mappings (sub-spaces), got {type(space).__name__}")
    return [{name: parse_expression(v, f"{where}[{i}].{name}") for name, v in sub.items()}
            for i, sub in enumerate(space)]


def grid(subspaces: list[dict[str, Distribution]]) -> list[dict]:
    """Every combination of every sub-space, in order (for the grid sampler)."""
    import itertools

    out = []
    for sub in subspaces:
        names = list(sub)
        for combo in itertools.product(*(sub[n].grid_values() for n in names)):
            out.append(dict(zip(names, combo)))
    return out
