"""Fuzzing the JSONL/MLTable reader and `visionml validate` (issue 18, item 1): any bytes give
records or FILE:LINE problems (or one line naming the file), never a traceback, never a hang (a
time bound per input), and memory in proportion to the input.

The checks are plain functions of (workspace, input) so that `make fuzz` (benchmarks/fuzz.py) runs
the same properties for minutes; the tests below run them for a bounded number of inputs.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from visionml.data.reader import load_dataset, read_dataset
from visionml.errors import DataError, UsageError

from .fuzzing import (TIME_BOUND_S, TRIED, WORST, budget, in_workspace, jsonl_files, line_count, make_workspace,
                      mltable_files, run_cli)

TASKS = st.sampled_from([None, None, "image_classification", "multilabel", "object-detection",
                         "image_instance_segmentation"])

MEMORY_PER_BYTE = 400
"""The most bytes of Python memory the reader may hold per byte of input (plus MEMORY_FLOOR): every
problem it reports is an object with its message, and a line of 3-byte objects (``{},{},...``) has two
problems per object, so the worst case is a few hundred times the input; anything super-linear
(a copy per line of the whole file, a quadratic list) exceeds it at once."""
MEMORY_FLOOR = 4 * 2**20


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The images the fuzzed lines point at; the http download cache inside it, not in ~/.cache
    (the fuzzed lines name an http URL on a closed loopback port)."""
    folder = make_workspace(tmp_path_factory.mktemp("fuzz-reader"))
    before = os.environ.get("VISIONML_CACHE_DIR")
    os.environ["VISIONML_CACHE_DIR"] = str(folder / "cache")
    try:
        yield folder
    finally:
        if before is None:
            del os.environ["VISIONML_CACHE_DIR"]
        else:
            os.environ["VISIONML_CACHE_DIR"] = before


# ----------------------------------------------------------------------------- the properties


def check_validate(workspace: Path, data: bytes, task: str | None, image_check: bool) -> None:
    """`visionml validate DATA --json` on ``data``: exit 0/1 with every problem at a FILE:LINE of
    this file, or exit 1/2 with one error line; under the time bound; never an exception."""
    data = in_workspace(data, workspace)
    src = workspace / "data.jsonl"
    src.write_bytes(data)
    argv = ["validate", str(src), "--json", "--datastore", f"store={workspace / 'store'}"]
    argv += ["--task", task] if task else []
    argv += [] if image_check else ["--no-image-check"]
    code, out, err, seconds = run_cli(argv)
    TRIED["validate"] += 1
    assert seconds < TIME_BOUND_S, f"validate took {seconds:.1f} s on {len(data)} bytes"
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err
    if not out:  # one line for the file as a whole (2: the task cannot be inferred, pass --task)
        assert code in (1, 2) and err.startswith("visionml validate: error: "), err
        return
    doc = orjson.loads(out)
    lines = line_count(data)
    for problem in doc["problems"] + doc["warnings"]:
        assert problem["source"] == str(src), problem
        assert 1 <= problem["line"] <= lines, (problem, lines)
        assert problem["field"] and problem["reason"], problem
    assert doc["valid"] == (code == 0)
    assert code == 1 or not doc["problems"]


_PROBLEM = re.compile(r"(?s)(?P<src>.+?):(?P<line>\d+): (?P<field>[^:]+): (?P<reason>.+)")


def check_reader(workspace: Path, data: bytes, task: str | None, image_check: bool) -> None:
    """The reader's API (what training calls): records of lines that exist and carry no problem that
    drops them, each problem ``FILE:LINE: field: reason``; strict reading raises ``DataError`` exactly
    when there are problems."""
    data = in_workspace(data, workspace)
    src = workspace / "data.jsonl"
    src.write_bytes(data)
    stores = {"store": str(workspace / "store")}
    start = time.perf_counter()
    try:
        loaded = load_dataset(src, task, datastores=stores, check_images=image_check)
    except UsageError as exc:  # every label an empty list: the task cannot be inferred
        assert "--task" in str(exc)
        return
    finally:
        TRIED["reader"] += 1
    assert time.perf_counter() - start < TIME_BOUND_S
    lines = line_count(data)
    # (a "fatal" problem stops training as a whole rather than dropping its line)
    dropped = {p.line for p in loaded.problems if p.training == "dropped image"}
    for record in loaded.records:
        assert 1 <= record.line <= lines and record.line not in dropped, record
    for problem in loaded.problems + loaded.warnings:
        match = _PROBLEM.fullmatch(str(problem))
        assert match and match["src"] == str(src) and 1 <= int(match["line"]) <= lines, str(problem)
    try:
        strict = read_dataset(src, task, datastores=stores, check_images=image_check)
    except DataError as exc:
        assert loaded.problems or not loaded.records, exc
        assert all(_PROBLEM.fullmatch(str(p)) for p in exc.problems)
    else:
        assert not loaded.problems and strict.records


def check_memory(workspace: Path, data: bytes, copies: int) -> tuple[int, int]:
    """(input bytes, peak bytes the reader allocated) for ``data`` repeated ``copies`` times."""
    data = in_workspace(data, workspace)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    data = data * copies
    src = workspace / "memory.jsonl"
    src.write_bytes(data)
    tracemalloc.start()
    try:
        try:
            load_dataset(src, None, datastores={"store": str(workspace / "store")}, check_images=False)
        except UsageError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    TRIED["memory"] += 1
    if len(data) >= 10_000:  # below that the fixed costs dominate the ratio
        WORST["memory bytes per input byte"] = max(WORST.get("memory bytes per input byte", 0), peak / len(data))
    assert peak <= MEMORY_PER_BYTE * len(data) + MEMORY_FLOOR, f"{peak:,} bytes for {len(data):,} input bytes"
    return len(data), peak


def check_mltable(workspace: Path, table: bytes, image_check: bool) -> None:
    """`visionml validate FOLDER` with ``table`` as its MLTable file: the JSONL files it names read
    as above, or one error line naming the MLTable; never an exception, never a file outside the
    folder through a relative entry."""
    folder = workspace / "table"
    if not folder.is_dir():
        (folder / "sub").mkdir(parents=True)
        shutil.copy(workspace / "ok.png", folder / "ok.png")
        (folder / "data.jsonl").write_bytes(b'{"image_url": "ok.png", "label": "cat"}\n')
        (folder / "sub" / "more.jsonl").write_bytes(b'{"image_url": "../ok.png", "label": "dog"}\n')
        (workspace / "outside.jsonl").write_bytes(b'{"image_url": "ok.png", "label": "outside"}\n')
    (folder / "MLTable").write_bytes(table)
    argv = ["validate", str(folder), "--json"] + ([] if image_check else ["--no-image-check"])
    code, out, err, seconds = run_cli(argv)
    TRIED["mltable"] += 1
    assert seconds < TIME_BOUND_S
    assert code in (0, 1, 2) and "Traceback" not in err, (code, err)
    if not out:
        assert err.startswith("visionml validate: error: ") and "MLTable" in err, err
        return
    doc = orjson.loads(out)
    sources = doc["summary"]["sources"]
    assert str(workspace / "outside.jsonl") not in sources  # only sub/../../outside.jsonl names it
    assert all(Path(s).is_file() for s in sources)


# ----------------------------------------------------------------------------- the suite's runs


@budget(80)
@given(data=jsonl_files(), task=TASKS, image_check=st.booleans())
@example(data=b"\xef\xbb\xbf\n\n", task=None, image_check=True)
@example(data=b'{"image_url": "ok.png", "label": []}\n', task=None, image_check=True)
@example(data=b'{"image_url": "ok.png", "label": "cat"}\n{"image_url": "ok.png", "label": 3}\n', task=None,
         image_check=True)
def test_validate_answers_every_input_with_file_line_problems(workspace, data, task, image_check):
    check_validate(workspace, data, task, image_check)


@budget(50)
@given(data=jsonl_files(), task=TASKS, image_check=st.booleans())
@example(data=b'\xef\xbb\xbf{"image_url":"trunc.png","label":"cat"}\n{"image_url":"trunc.png","label":0}', task=None,
         image_check=False)
def test_the_reader_gives_records_or_file_line_problems(workspace, data, task, image_check):
    check_reader(workspace, data, task, image_check)


@budget(15, deadline_s=30)
@given(data=jsonl_files(), copies=st.integers(1, 200))
@example(data=b"[" + b"{}," * 2000 + b"{}]\n", copies=50)  # thousands of objects, two problems each
@example(data=b'{"image_url": "ok.png", "label": [' + b'{"polygon": [[0.1, 0.1, 0.2]]},' * 500 + b'{}]}\n', copies=20)
def test_reader_memory_is_in_proportion_to_the_input(workspace, data, copies):
    check_memory(workspace, data, copies)


@budget(40)
@given(table=mltable_files(), image_check=st.booleans())
@example(table=b"paths:\n- file: sub/../../outside.jsonl\n", image_check=True)
@example(table=b"paths:\n- pattern: ../*.jsonl\n", image_check=True)
@example(table=b"\xff\xfe not utf-8\n", image_check=True)
def test_validate_answers_every_mltable(workspace, table, image_check):
    check_mltable(workspace, table, image_check)


def test_a_million_byte_hostile_line_is_refused_in_bounded_time(workspace):
    """One line of a megabyte of nested lists and objects (what a fuzzer cannot grow to in the
    suite's budget): a FILE:LINE problem in well under the time bound."""
    line = b'{"image_url": "ok.png", "label": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
    src = workspace / "deep.jsonl"
    src.write_bytes(line + b'{"image_url": "ok.png", "label": "cat"}\n')
    code, out, err, seconds = run_cli(["validate", str(src), "--json", "--no-image-check"])
    assert code == 1 and seconds < TIME_BOUND_S, (code, err, seconds)
    problems = orjson.loads(out)["problems"]
    assert [(p["line"], p["field"]) for p in problems] == [(1, "line")], problems

