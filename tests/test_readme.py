"""The README's commands, as a newcomer copies them: every `visionml ...` line parses with the
CLI's own parser, every path it reads was written by an earlier example (or is in the
repository), and the job YAML it saves is a valid job. Running them end to end takes minutes of
training, so that is done by hand (make demo does the same walk)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from visionml.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _shell_lines(block: str) -> list[str]:
    """The block's commands, backslash continuations joined, here-documents left out."""
    lines, heredoc_end, pending = [], None, ""
    for raw in block.splitlines():
        if heredoc_end is not None:
            heredoc_end = None if raw.strip() == heredoc_end else heredoc_end
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        match = re.search(r"<<-?\s*'?(\w+)'?", line)
        if match:
            heredoc_end = match.group(1)
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _argv(line: str) -> list[str]:
    """A `visionml ...` command line as argv, without the shell's redirections and `&`."""
    words = shlex.split(line, comments=True)
    for stop in (">", ">>", "2>", "|", "&", "&&", ";"):
        if stop in words:
            words = words[:words.index(stop)]
    return words[1:]


def readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = [line for block in _blocks(text, "bash") for line in _shell_lines(block)
                if line.startswith("visionml ")]
    # Inline commands in the prose too (`visionml models --task T`), not names (`visionml serve`)
    # nor elided ones ("...").
    commands += [span for span in re.findall(r"`(visionml [^`]+)`", text)
                 if len(span.split()) > 2 and "..." not in span]
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_an_example_of_every_command():
    used = {_argv(line)[0] for line in COMMANDS}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert used == set(sub.choices)


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line, capsys):
    try:
        args = build_parser().parse_args(_argv(line))
    except SystemExit:
        pytest.fail(f"the README's `{line}` is refused by the CLI: {capsys.readouterr().err.strip()}")
    assert callable(args.func)


# What each command writes (so later examples may read it) and the arguments that read a path.
WRITES = {"sample-data": ["output"], "train": ["output"], "export": ["output"], "convert": ["output"],
          "run": ["output"], "evaluate": ["output", "plots"], "predict": ["output"]}
READS = {"validate": ["data"], "train": ["training_data", "validation_data"], "evaluate": ["model", "data"],
         "predict": ["model", "inputs"], "explain": ["model", "image"], "serve": ["model"],
         "export": ["model"], "convert": ["src"], "run": ["job"]}


def _under(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def test_readme_commands_read_only_what_an_earlier_example_wrote():
    written = ["job.yml"]  # "Save this as job.yml": the README's YAML block
    for line in COMMANDS:
        if "postgresql://" in line:  # the multi-machine variant of `run`: a database, not a file
            continue
        args = build_parser().parse_args(_argv(line))
        for name in READS.get(args.command, []):
            values = getattr(args, name)
            for path in values if isinstance(values, list) else [values]:
                if path is not None:
                    assert _under(path, written) or (ROOT / path).exists(), \
                        f"`{line}` reads {path}, which no earlier README example writes"
        written += [getattr(args, name) for name in WRITES.get(args.command, []) if getattr(args, name, None)]


def test_the_readme_job_yaml_is_a_valid_job():
    from visionml.sweep.spec import parse_job

    (job,) = [block for block in _blocks(README.read_text(encoding="utf-8"), "yaml") if "type: automl" in block]
    spec = parse_job(yaml.safe_load(job), base=ROOT, source="README job.yml")
    assert spec.max_trials == 4


def test_the_readme_puts_a_trials_run_folder_where_the_sweep_writes_it():
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "`trials/<n>/run/`" in text and "`trials/<n>/` (each a normal run folder)" not in text
