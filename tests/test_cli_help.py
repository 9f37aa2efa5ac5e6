"""Every command's --help as a user reads it: rendered text, help for every argument, the same
placeholders for the same things, and --device auto wherever a model runs."""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict

import pytest

from visionml.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(_subparsers())


def _arguments(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _placeholder(parser: argparse.ArgumentParser, action) -> str:
    """What the usage line shows after the option (argparse's own formatting)."""
    return parser._get_formatter()._format_args(action, action.dest.upper())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders_without_doubled_percent_signs(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: visionml {command}")
    assert "%%" not in out


def test_sample_data_help_shows_the_split_in_percent(capsys):
    with pytest.raises(SystemExit):
        main(["sample-data", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "train.jsonl (80%)" in text and "val.jsonl (20%)" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_has_help_text(command):
    parser = _subparsers()[command]
    missing = [a.option_strings[-1] if a.option_strings else a.dest
               for a in _arguments(parser) if not (a.help or "").strip()]
    assert missing == [], f"visionml {command}: no help for {missing}"


def test_choices_are_explained_in_the_help():
    parsers = _subparsers()
    for command, option in (("serve", "--backend"), ("convert", "--from"), ("convert", "--to"),
                            ("export", "--format")):
        action = parsers[command]._option_string_actions[option]
        for choice in action.choices:
            assert choice in action.help, f"visionml {command} {option}: {choice!r} is not explained"


def test_an_option_shows_the_same_placeholder_in_every_command():
    shown = defaultdict(dict)
    for command, parser in _subparsers().items():
        for action in _arguments(parser):
            if action.option_strings and action.nargs != 0:
                shown[max(action.option_strings, key=len)][command] = _placeholder(parser, action)
    # --output names what it writes (a folder, a JSON file, a PNG), never the bare word OUTPUT.
    outputs = shown.pop("--output")
    assert set(outputs.values()) <= {"DIR", "FILE", "OUT", "PNG"}, outputs
    differing = {option: by_command for option, by_command in shown.items() if len(set(by_command.values())) > 1}
    assert differing == {}


def test_sweep_commands_use_the_documented_placeholders():
    parsers = _subparsers()
    run_usage = " ".join(parsers["run"].format_usage().split())
    for part in ("JOB.yml", "--output DIR", "--storage URL", "--preset NAME", "--device DEVICE"):
        assert part in run_usage
    worker_usage = " ".join(parsers["sweep-worker"].format_usage().split())
    for part in ("--storage URL", "--study NAME", "--output DIR", "--max-concurrent N"):
        assert part in worker_usage


@pytest.mark.parametrize("command", ["train", "run", "evaluate", "predict", "explain", "serve"])
def test_device_defaults_to_auto(command):
    action = _subparsers()[command]._option_string_actions["--device"]
    assert action.default == "auto"
    assert "auto" in action.help and "cuda" in action.help


def test_resolve_device():
    import torch

    from visionml.errors import UsageError
    from visionml.predict.backends import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="--device cpu"):
            resolve_device("cuda:0")


@pytest.fixture(scope="module")
def classifier(model_folder):
    return model_folder("image_classification")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("help_image") / "cat.jpg"
    Image.fromarray(data.chelsea()).resize((96, 64)).save(path)
    return path


def test_predict_runs_with_device_auto(classifier, image_file, tmp_path):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(classifier), str(image_file), "--device", "auto", "-o", str(out)]) == 0
    assert '"probs"' in out.read_text()


@pytest.mark.parametrize("algorithm", ["guided_backprop", "guided_gradcam"])
def test_guided_methods_print_no_captum_warning(classifier, image_file, tmp_path, algorithm):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["explain", "--model", str(classifier), str(image_file), "--algorithm", algorithm,
                     "-o", str(tmp_path / "viz.png")]) == 0
    assert [str(w.message) for w in caught if "backward hooks" in str(w.message)] == []
