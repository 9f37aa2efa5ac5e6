"""bf16 on a CPU only where the CPU computes it natively: emulated bf16 is about twice as slow as
fp32 (measured on an AVX2-only EPYC: 13.5 s vs 24 s per detector step of the cpu preset)."""

from __future__ import annotations

import torch

from visionml.explain import methods
from visionml.train.loop import resolve_precision

CPU = torch.device("cpu")


def test_bf16_where_native(monkeypatch):
    monkeypatch.setattr(methods, "bf16_available", lambda device: True)
    precision = resolve_precision("bf16", CPU)
    assert precision.name == "bf16" and precision.dtype is torch.bfloat16


def test_fp32_where_bf16_would_be_emulated(monkeypatch):
    monkeypatch.setattr(methods, "bf16_available", lambda device: False)
    precision = resolve_precision("bf16", CPU)
    assert precision.name == "fp32" and precision.dtype is None


def test_cuda_bf16_is_kept(monkeypatch):
    monkeypatch.setattr(methods, "bf16_available", lambda device: False)
    assert resolve_precision("bf16", torch.device("cuda")).dtype is torch.bfloat16
