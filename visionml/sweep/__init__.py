"""Hyperparameter sweeps from Azure AutoML image job YAML, run on Optuna.

``spec`` reads the job YAML, ``space`` parses search-space expressions, ``pruners`` holds
Azure's early-termination policies as Optuna pruners, ``runner`` runs the trials.
"""
