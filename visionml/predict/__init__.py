"""Scoring: ``Predictor`` turns images into Azure AutoML's output objects (see predictor.py)."""

from .predictor import Predictor

__all__ = ["Predictor"]
