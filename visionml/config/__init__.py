"""Hyperparameters: one typed definition each, Azure's names and defaults, parsed without eval.

``resolve_hyperparameters(task, overrides, preset)`` layers defaults < model defaults < preset
< overrides, parses strings by type, range-checks, rejects unknown keys with the closest names,
and returns a frozen ``Hyperparameters``: every key of the task, typed, read as ``hp["key"]`` or
``hp.key``, so no reader restates a default.

Every key an Azure AutoML image job accepts is accepted here, in its CLI/SDK v2 spelling (the
canonical name, saved in config.json and the manifest) and in the SDK v1 / internal spellings of
Azure's own code (``Param.aliases``: ``box_score_thresh``, ``lr_scheduler``, ``valid_crop_size``,
...). ``canonical_overrides`` is the one place a key is resolved: an alias becomes its canonical
name, a key that only Azure's yolov5 or Azure's service reads is dropped with a note
(``NOTED_KEYS``), a key that names something visionml cannot do fails with what to do instead
(``REFUSED_KEYS``), and anything else fails with the closest names.

``Param.parse`` is the one value parser (``--set``, ``xai_parameters`` and job YAMLs all use it;
``strict=True`` reads JSON as Azure's scoring code does, ``FieldError`` says why a value was refused).
Parameters marked ``inference=True`` are the ones a deployment may change (``visionml
predict/serve --set``).

The package, by seam: ``fields`` (``Param`` and the parser by kind), ``hyperparameters`` (the
table of Azure's keys), ``resolve`` (overrides -> ``Hyperparameters``), ``cpu_hint``. Import from
``visionml.config``; the modules are how it is kept, not an interface.
"""

from .cpu_hint import cpu_time_hint
from .fields import ALL, CLS, DET, SEG, STRTOBOOL_FALSE, STRTOBOOL_TRUE, FieldError, Param
from .hyperparameters import ALIASES, NOTED_KEYS, PARAMS, REFUSED_KEYS
from .resolve import (PRESETS, Hyperparameters, canonical_name, canonical_overrides, check_supported, get_param,
                      inference_keys, params_for, parse_set_arguments, preset_values, resolve_hyperparameters)

__all__ = ["ALIASES", "ALL", "CLS", "DET", "NOTED_KEYS", "PARAMS", "PRESETS", "REFUSED_KEYS", "SEG", "STRTOBOOL_FALSE",
           "STRTOBOOL_TRUE", "FieldError", "Hyperparameters", "Param", "canonical_name", "canonical_overrides",
           "check_supported", "cpu_time_hint", "get_param", "inference_keys", "params_for", "parse_set_arguments",
           "preset_values", "resolve_hyperparameters"]
