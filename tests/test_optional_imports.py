"""A missing module is an error that says what to install, never a silent fallback: no command
quietly vanishes from the CLI, and the optional MLflow export names its extra."""

from __future__ import annotations

import sys

import pytest

from visionml.cli import build_parser, main


def test_a_command_whose_module_is_missing_fails_instead_of_vanishing(monkeypatch):
    monkeypatch.setitem(sys.modules, "visionml.commands.serve", None)  # its import now raises
    with pytest.raises(ImportError, match="visionml.commands.serve"):
        build_parser()


def test_mlflow_export_without_the_extra_names_the_install_line(tmp_path, monkeypatch, capsys):
    """Runs whether or not mlflow is installed here (tests/export skips its MLflow tests without it)."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    out = tmp_path / "mlflow-model"
    assert main(["export", "--model", str(tmp_path / "model"), "--format", "mlflow", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "MLflow export needs the optional mlflow extra" in err
    assert "pip install 'visionml[mlflow]'" in err and "Traceback" not in err
    assert not out.exists()
