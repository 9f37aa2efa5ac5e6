"""Hyperparameter sweeps from Azure AutoML image job YAML, run on Optuna.

``spec`` reads the job YAML, ``space`` parses search-space expressions, ``pruners`` holds
Azure's early-termination policies as Optuna pruners. ``study`` creates or loads the study (where
a sweep's settings live), ``runner`` keeps the trial slots filled, ``trial`` is one trial's
process, ``report`` writes trials.csv, best/ and the plot; ``jobs`` holds the CLI's entry points.
"""
