"""Resolving a task's hyperparameters: the user's keys to canonical names (``canonical_overrides``),
defaults < model defaults < preset < overrides (``resolve_hyperparameters``), Azure's cross-field
and per-model rules, and the frozen ``Hyperparameters`` every reader takes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import UsageError, did_you_mean
from ..tasks import get_task
from .fields import Param
from .hyperparameters import ALIASES, NOTED_KEYS, PARAMS, REFUSED_KEYS


def canonical_name(key: str) -> str:
    """The canonical name of ``key`` (itself unless it is one of Azure's other spellings)."""
    return ALIASES.get(key, key)


def canonical_overrides(task, overrides: Mapping | None, where: str = "") -> tuple[dict, list[str]]:
    """``(overrides keyed by canonical names, notes)``: the one place a user's key is resolved.

    Aliases become their canonical names (a note lists them); two spellings of one key with different
    values fail; ``NOTED_KEYS`` are dropped with their note; ``REFUSED_KEYS`` fail with what to do;
    unknown keys and keys of another task fail with the closest names (``get_param``). ``where``
    prefixes messages (e.g. the job file)."""
    task = get_task(task)
    prefix = f"{where}: " if where else ""
    out: dict = {}
    spelled: dict[str, str] = {}
    renamed, notes = [], []
    for key, raw in dict(overrides or {}).items():
        key = str(key).strip()
        if key in REFUSED_KEYS:
            raise UsageError(f"{prefix}{key} {REFUSED_KEYS[key]}")
        if key in NOTED_KEYS:
            groups, why = NOTED_KEYS[key]
            if not any(g in task.param_groups for g in groups):
                raise UsageError(f"{prefix}hyperparameter {key!r} does not apply to {task.name}: it {why}")
            notes.append(f"note: {prefix}{key} {why}")
            continue
        try:
            name = get_param(key, task).name
        except UsageError as exc:
            raise UsageError(f"{prefix}{exc}") from None
        if name in out and out[name] != raw:
            raise UsageError(f"{prefix}{spelled[name]}={out[name]!r} and {key}={raw!r} are the same hyperparameter "
                             f"({name}) with two values: give it once")
        if name != key:
            renamed.append(f"{key} -> {name}")
        out[name], spelled[name] = raw, key
    if renamed:
        notes.insert(0, f"note: {prefix}Azure's other spellings saved under their v2 names: {', '.join(renamed)}")
    return out, notes


PRESETS = ("cpu",)
"""Named groups of settings (``--preset NAME``), defined per task (``Task.cpu_preset``); explicit
``--set`` values override them. ``cpu``: train from scratch on small data on a laptop-class CPU in
minutes: small models, small images, fewer proposals, AdamW with warm-up, bf16 where native."""


class Hyperparameters(Mapping):
    """The resolved hyperparameters of one task: every key the task has, each parsed and
    range-checked, frozen. Read ``hp["learning_rate"]`` or ``hp.learning_rate``; change with
    ``hp.replace(learning_rate=0.01)``, which checks the new values like ``--set`` does."""

    __slots__ = ("_task", "_values", "_notes")

    def __init__(self, task, values: dict, notes=()):
        object.__setattr__(self, "_task", get_task(task))
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_notes", tuple(notes))

    @property
    def task(self):
        return self._task

    @property
    def notes(self) -> tuple[str, ...]:
        """What resolving these values changed or ignored, one line each ("note: ..."/"warning: ..."):
        renamed spellings, keys only Azure's yolov5 reads, clamped values, what a preset set. Training logs them."""
        return self._notes

    def __getitem__(self, key: str):
        return self._values[ALIASES.get(key, key)]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._task.name} has no hyperparameter {name!r}."
                                 f"{did_you_mean(name, self._values)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Hyperparameters are frozen: use hp.replace(key=value)")

    def __reduce__(self):
        return Hyperparameters, (self._task.name, self._values)

    def __repr__(self) -> str:
        return f"Hyperparameters({self._task.name}, {self._values!r})"

    def replace(self, **changes) -> Hyperparameters:
        """A copy with ``changes`` (raw or typed values) parsed, checked and applied."""
        values = dict(self._values)
        changes, notes = canonical_overrides(self._task, changes)
        for key, raw in changes.items():
            values[key], note = PARAMS[key].parse_noted(raw, self._task)
            notes += [note] if note else []
        notes += _apply_model_rules(self._task, values, set(changes))
        _check_consistency(self._task, values)
        return Hyperparameters(self._task, values, (*self._notes, *notes))

    def to_json(self) -> dict:
        """Plain JSON values (tuples such as tile_grid_size become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self._values.items()}


def params_for(task) -> dict[str, Param]:
    """Every hyperparameter that applies to ``task``."""
    task = get_task(task)
    return {name: p for name, p in PARAMS.items() if p.applies_to(task)}


def inference_keys(task) -> tuple[str, ...]:
    """The settings a deployment of a ``task`` model may change without retraining."""
    return tuple(name for name, p in params_for(task).items() if p.inference)


def get_param(key: str, task) -> Param:
    """The definition of ``key`` (any of its spellings) for ``task``; UsageError for unknown or
    other-task keys, and for keys visionml accepts in a job but does not keep (``NOTED_KEYS``)."""
    task = get_task(task)
    if key in NOTED_KEYS or key in REFUSED_KEYS:
        raise UsageError(f"{key} {NOTED_KEYS[key][1] if key in NOTED_KEYS else REFUSED_KEYS[key]}")
    if canonical_name(key) not in PARAMS:
        known = [*PARAMS, *ALIASES, *NOTED_KEYS]
        raise UsageError(f"unknown hyperparameter {key!r}.{did_you_mean(key, known)} "
                         f"See docs/models.md for the full list.")
    param = PARAMS[canonical_name(key)]
    if not param.applies_to(task):
        where = ", ".join(name for name, t in _tasks().items() if param.applies_to(t))
        raise UsageError(f"hyperparameter {key!r} does not apply to {task.name}; it applies to {where}")
    return param


def _tasks():
    from ..tasks import TASKS

    return TASKS


def parse_set_arguments(items: list[str], example: str = "learning_rate=0.01") -> dict[str, str]:
    """``["lr=0.1", ...]`` from repeated ``--set KEY=VALUE`` into a dict (values still strings);
    ``example`` is the KEY=VALUE the error message shows."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {example}")
        result[key.strip()] = value.strip()
    return result


def resolve_hyperparameters(task, overrides: Mapping | None = None, preset: str | None = None) -> Hyperparameters:
    """Every hyperparameter of ``task`` with a checked value: defaults < model defaults < preset < overrides."""
    from ..models.registry import get_spec

    task = get_task(task)
    given, notes = canonical_overrides(task, overrides)
    by_preset = preset_values(preset, task)
    explicit = {}
    for key, raw in {**by_preset, **given}.items():
        explicit[key], note = get_param(key, task).parse_noted(raw, task)
        notes += [note] if note else []
    model = explicit.get("model_name") or task.default_model
    resolved = {name: p.default_for(task) for name, p in params_for(task).items()}
    resolved["model_name"] = model
    resolved.update({key: get_param(key, task).parse(raw, task)
                     for key, raw in get_spec(model, task).defaults_for(task).items()})
    resolved.update(explicit)
    if by_preset:
        notes.append(_preset_note(preset, by_preset, given, resolved))
    notes += _apply_model_rules(task, resolved, set(given))
    _check_consistency(task, resolved)
    return Hyperparameters(task, resolved, notes)


def _preset_note(preset: str, by_preset: dict, given: dict, resolved: dict) -> str:
    """One line: the keys ``--preset`` set (the values used) and the ones the user's values overrode."""
    kept = [k for k in by_preset if k in given]
    values = ", ".join(f"{k}={_show(resolved[k])}" for k in by_preset if k not in given)
    return (f"note: --preset {preset} set {values or 'nothing'}"
            + (f" (your values kept for {', '.join(kept)})" if kept else ""))


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _apply_model_rules(task, values: dict, explicit: set) -> list[str]:
    """Azure's per-model rules that adjust values (not refuse them), with a note when one changed. ViTs
    train at the validation crop: Azure forces ``training_crop_size`` to ``validation_crop_size``."""
    from ..models.registry import get_spec

    spec = get_spec(values["model_name"], task)
    notes = []
    if spec.same_crop_sizes and "training_crop_size" in values \
            and values["training_crop_size"] != values["validation_crop_size"]:
        was = values["training_crop_size"]
        values["training_crop_size"] = values["validation_crop_size"]
        if "training_crop_size" in explicit:
            notes.append(f"note: {spec.name} trains at validation_crop_size ({values['validation_crop_size']}), as "
                         f"Azure does: training_crop_size {was} was replaced. Set validation_crop_size to train "
                         f"at another size (the position embeddings are resized to it).")
    return notes


def check_supported(hp: Mapping) -> None:
    """Refuse, before any work, settings that are parsed and checked but whose feature visionml does
    not have yet, rather than train without it: a ported Azure job must not silently differ. Every
    Azure key visionml keeps is honoured today (tiling, the last one refused, is in visionml.tiling);
    training and sweeps still call this first, so a key added before its feature is refused here."""


def preset_values(preset: str | None, task) -> dict:
    """The settings preset ``preset`` gives ``task`` (empty without a preset)."""
    if not preset:
        return {}
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}.{did_you_mean(preset, PRESETS, n=2, cutoff=0.4)} "
                         f"Presets: {', '.join(PRESETS)}.")
    return dict(get_task(task).cpu_preset)


def _check_consistency(task, hp: dict) -> None:
    """Cross-field rules that single-value ranges cannot express (each applies where its keys exist)."""
    from ..models.registry import get_spec

    spec = get_spec(hp["model_name"], task)
    if "validation_crop_size" in hp:
        if hp["validation_resize_size"] < hp["validation_crop_size"]:
            raise UsageError(f"validation_resize_size ({hp['validation_resize_size']}) must be at least "
                             f"validation_crop_size ({hp['validation_crop_size']})")
        if spec.patch_size and hp["validation_crop_size"] < spec.patch_size:
            raise UsageError(f"{spec.name} cuts the image into {spec.patch_size}-pixel patches: validation_crop_size "
                             f"must be at least {spec.patch_size} (got {hp['validation_crop_size']})")
        if spec.fixed_input_size:
            for key in ("training_crop_size", "validation_crop_size"):
                if hp[key] != spec.input_size:
                    raise UsageError(f"{spec.name} takes {spec.input_size}x{spec.input_size} inputs only: "
                                     f"set {key}={spec.input_size} (got {hp[key]})")
    if "max_size" in hp and hp["max_size"] < hp["min_size"]:
        raise UsageError(f"max_size ({hp['max_size']}) must be at least min_size ({hp['min_size']})")
