"""Long fuzz runs (`make fuzz`): the properties of tests/reliability for minutes instead of the
suite's bounded number of inputs, with fresh random inputs every run.

Groups (``--groups``, default all):

* ``reader``: `visionml validate` and the reader's API on any bytes, MLTable files, memory per byte;
* ``converters``: COCO/JSONL/YOLO round trips (half a pixel, 1 % of area), hostile COCO, YOLO,
  VOC, CSV and instance-mask files, the geometry functions, mask outlines;
* ``paths``: relative and azureml paths against their root;
* ``score``: `visionml serve` (a tiny untrained classifier, then a detector) fuzzed with schemathesis
  from its own ``/openapi.json``, plus real images in every body form: no 5xx, every answer as the
  document says, the server answering a valid request after every case;
* ``atheris``: coverage-guided bytes into `visionml validate` (libFuzzer through atheris, when it is
  installed), seeded with hypothesis' schema-shaped files.

Each group runs for ``--seconds`` (``FUZZ_SECONDS``), shared equally by its properties, each
running chunks of fresh inputs until its share is spent. A property that fails is shrunk by hypothesis to its smallest input, printed, and not run
again; the exit code is 1 when anything failed. The counts go to stdout and, with ``--report``,
to a markdown file (benchmarks/results/fuzz.md).

    FUZZ_SECONDS=600 make fuzz            # 10 minutes per group
    .venv/bin/python benchmarks/fuzz.py --seconds 20 --groups reader
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VISIONML_OFFLINE", "1")

CHUNK = 50
"""Inputs per turn of a property (hypothesis generates them afresh each turn)."""
DEADLINE_S = 10.0
"""Per input, on top of the checks' own time bounds: a hang shows as a failure, not a stuck run."""


def _targets(workdir: Path) -> dict[str, list[tuple[str, dict, object, str]]]:
    """group -> [(name, strategies, check(**drawn), the TRIED key it counts under)]."""
    from hypothesis import strategies as st

    from tests.reliability import fuzzing
    from tests.reliability import test_fuzz_geometry as geometry
    from tests.reliability import test_fuzz_reader as reader
    from tests.reliability import test_security as security

    reader_ws = fuzzing.make_workspace(workdir / "reader")
    os.environ["VISIONML_CACHE_DIR"] = str(workdir / "cache")  # not ~/.cache
    geometry_ws = workdir / "geometry"
    geometry_ws.mkdir()
    file_kinds = dict(data=fuzzing.jsonl_files(), task=reader.TASKS, image_check=st.booleans())
    return {
        "reader": [
            ("validate", file_kinds, lambda **kw: reader.check_validate(reader_ws, **kw), "validate"),
            ("reader API", file_kinds, lambda **kw: reader.check_reader(reader_ws, **kw), "reader"),
            ("MLTable", dict(table=fuzzing.mltable_files(), image_check=st.booleans()),
             lambda **kw: reader.check_mltable(reader_ws, **kw), "mltable"),
            ("memory", dict(data=fuzzing.jsonl_files(), copies=st.integers(1, 400)),
             lambda **kw: reader.check_memory(reader_ws, **kw), "memory"),
        ],
        "converters": [
            ("box round trip", dict(image=geometry.box_images()),
             lambda image: geometry.check_box_round_trip(geometry_ws, *image), "box round trip"),
            ("polygon round trip", dict(image=geometry.polygon_images()),
             lambda image: geometry.check_polygon_round_trip(geometry_ws, *image), "polygon round trip"),
            ("geometry", dict(image=geometry.box_images()), lambda image: geometry.check_pure_round_trips(*image),
             "geometry"),
            ("mask outline", dict(mask=geometry.blob_masks()), lambda mask: geometry.check_mask_outline(mask),
             "mask outline"),
            ("COCO documents", dict(doc=geometry.coco_documents,
                                    task=st.sampled_from([None, "object-detection", "instance-segmentation"]),
                                    skip_invalid=st.booleans()),
             lambda **kw: geometry.check_coco_document(geometry_ws, **kw), "coco document"),
            ("YOLO label files", dict(text=geometry.yolo_texts,
                                      names=st.lists(st.sampled_from(["cat", "dog", "x y"]), min_size=1, max_size=3),
                                      task=st.sampled_from([None, "object-detection", "instance-segmentation"]),
                                      skip_invalid=st.booleans()),
             lambda **kw: geometry.check_yolo_labels(geometry_ws, **kw), "yolo labels"),
            ("VOC files", dict(xml=geometry.voc_documents(), skip_invalid=st.booleans()),
             lambda **kw: geometry.check_voc_file(geometry_ws, **kw), "voc file"),
            ("CSV labels", dict(text=geometry.csv_texts, task=st.sampled_from([None, "multiclass", "multilabel"]),
                                skip_invalid=st.booleans()),
             lambda **kw: geometry.check_csv_labels(geometry_ws, **kw), "csv labels"),
            ("instance masks", dict(ids=geometry.instance_ids(), task=st.sampled_from(
                [None, "object-detection", "instance-segmentation"]), skip_invalid=st.booleans()),
             lambda ids, **kw: geometry.check_instance_masks(geometry_ws, ids, "I;16", **kw), "instance masks"),
        ],
        "paths": [
            ("paths under their root", dict(rel=security.relative_paths, how=st.sampled_from(
                ["relative", "azureml", "azureml-unmapped", "azureml-long"])),
             lambda **kw: security.check_under_root(**kw), "paths"),
        ],
    }


def _returning_none(check):
    def quiet(**drawn) -> None:  # hypothesis wants a test to return None
        check(**drawn)

    return quiet


def run_group(name: str, targets, seconds: float, deadline_s: float = DEADLINE_S) -> list[dict]:
    """Run each of the group's properties for its share of ``seconds``, each input within
    ``deadline_s``; one row per property."""
    import warnings

    from hypothesis import HealthCheck, given, settings

    from tests.reliability.fuzzing import TRIED

    warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' own, under numpy 2
    rows = {t[0]: {"group": name, "property": t[0], "inputs": 0, "seconds": 0.0, "failure": None} for t in targets}
    share = seconds / len(targets)  # each property its own slice of the group's time
    for label, strategies, check, key in targets:
        wrapped = settings(max_examples=CHUNK, deadline=timedelta(seconds=deadline_s), database=None,
                           derandomize=False, print_blob=True,
                           suppress_health_check=list(HealthCheck))(given(**strategies)(_returning_none(check)))
        start = time.monotonic()
        before = TRIED[key]
        while time.monotonic() - start < share:
            try:
                wrapped()
            except Exception:  # noqa: BLE001 - a property failed: shrunk and printed by hypothesis
                rows[label]["failure"] = traceback.format_exc(limit=-8)
                print(f"FAILED {name}: {label}\n{rows[label]['failure']}", file=sys.stderr, flush=True)
                break
        rows[label]["inputs"] = TRIED[key] - before
        rows[label]["seconds"] = time.monotonic() - start
    return list(rows.values())


def run_score(seconds: float, workdir: Path) -> list[dict]:
    """The schemathesis properties of tests/reliability/test_schemathesis.py against a served
    classifier for half of ``seconds`` and a served detector for the other half."""
    from tests.reliability.test_schemathesis import REQUEST_TIMEOUT_S, check_case, fuzzed_server

    rows = []
    for task in ("image_classification", "image_object_detection"):
        folder = workdir / f"score-{task}"
        folder.mkdir()
        print(f"  starting visionml serve ({task}) ...", file=sys.stderr, flush=True)
        with fuzzed_server(folder, task) as server:
            def check(case, server=server):
                check_case(server, *case)

            targets = [(f"{task}: schemathesis cases", dict(case=server.generated), check, "score"),
                       (f"{task}: real images", dict(case=server.with_images), check, "score")]
            # A case is up to 3 images with explanations, then a liveness request: on a busy 2-core
            # machine that took 10.5 s once. The property is no 5xx and a live server, not latency
            # (bench_serve measures that): the suite's bound, as in test_schemathesis.py.
            rows += run_group("score", targets, seconds / 2, deadline_s=2 * REQUEST_TIMEOUT_S)
    return rows


def run_atheris(seconds: float, workdir: Path) -> list[dict]:
    """libFuzzer (atheris) on `visionml validate` in a child process; the counts from its summary."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return [{"group": "atheris", "property": "validate (coverage-guided)", "inputs": 0, "seconds": 0.0,
                 "failure": None, "skipped": "atheris is not installed (pip install atheris, Linux x86-64)"}]
    corpus, artifacts = workdir / "corpus", workdir / "crashes"
    corpus.mkdir()
    artifacts.mkdir()
    _seed_corpus(corpus)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--atheris-child", str(workdir / "atheris-ws"),
                           f"-max_total_time={int(seconds)}", f"-artifact_prefix={artifacts}/", "-rss_limit_mb=4096",
                           f"-timeout={int(DEADLINE_S)}", str(corpus)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    done = re.findall(r"Done (\d+) runs in (\d+) second", proc.stderr)
    crashed = proc.returncode != 0 or any(artifacts.iterdir())
    return [{"group": "atheris", "property": "validate (coverage-guided)",
             "inputs": int(done[-1][0]) if done else 0, "seconds": time.monotonic() - start,
             "failure": proc.stderr[-3000:] if crashed else None}]


def _seed_corpus(corpus: Path) -> None:
    import warnings

    from hypothesis.errors import NonInteractiveExampleWarning

    from tests.reliability.fuzzing import jsonl_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for i in range(64):
            (corpus / f"seed-{i:02d}.jsonl").write_bytes(jsonl_files().example())


def _atheris_child(workspace: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["visionml"]):
        from tests.reliability import fuzzing
        from tests.reliability.test_fuzz_reader import check_validate
    ws = fuzzing.make_workspace(Path(workspace))

    def one_input(data: bytes) -> None:
        task = (None, "image_classification", "multilabel", "object-detection", "instance-segmentation")[
            data[0] % 5] if data else None
        check_validate(ws, data[1:], task, image_check=bool(data and data[0] & 8))

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _markdown(rows: list[dict], seconds: float) -> str:
    total = sum(r["inputs"] for r in rows)
    lines = [f"# Fuzz runs (`make fuzz`, FUZZ_SECONDS={seconds:g} per group)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
             f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| group | property | inputs tried | seconds | inputs/s | failures |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        rate = r["inputs"] / r["seconds"] if r["seconds"] else 0
        failure = r.get("skipped") or ("**1** (below)" if r["failure"] else "0")
        lines.append(f"| {r['group']} | {r['property']} | {r['inputs']:,} | {r['seconds']:.0f} | {rate:.1f} | {failure} |")
    from tests.reliability.fuzzing import WORST

    lines += ["", f"Total: {total:,} inputs, {sum(1 for r in rows if r['failure'])} failing properties."]
    lines += [f"Largest {name}: {value:,.0f}." for name, value in sorted(WORST.items())] + [""]
    for r in rows:
        if r["failure"]:
            lines += [f"## {r['group']}: {r['property']}", "", "```", r["failure"].strip(), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)),
                        help="seconds per group (default $FUZZ_SECONDS or 600)")
    parser.add_argument("--groups", default=os.environ.get("FUZZ_GROUPS", "reader,converters,paths,score,atheris"),
                        help="comma-separated: reader, converters, paths, score, atheris")
    parser.add_argument("--report", type=Path, default=None, help="also write the table as markdown here")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="visionml-fuzz-") as folder:
        workdir = Path(folder)
        targets = _targets(workdir)
        for group in groups:
            print(f"fuzzing {group} for {args.seconds:g} s ...", file=sys.stderr, flush=True)
            if group == "atheris":
                rows += run_atheris(args.seconds, workdir)
            elif group == "score":
                rows += run_score(args.seconds, workdir)
            elif group in targets:
                rows += run_group(group, targets[group], args.seconds)
            else:
                parser.error(f"unknown group {group!r}: choose from reader, converters, paths, score, atheris")
    report = _markdown(rows, args.seconds)
    print(report)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report)
    return 1 if any(r["failure"] for r in rows) else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--atheris-child":
        _atheris_child(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
