"""``visionml models [--task T] [--json]``: the model registry, with sizes and per-task defaults."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="list the models visionml can train",
        description="List the model names --model-name / model_name accept, per task, with their parameter "
        "count, input size, source library and whether guided Grad-CAM can explain them. 'default' marks "
        "the model a task uses when none is named (Azure's), 'cpu' the one --preset cpu trains.")
    parser.add_argument("--task", help="only the models for this task")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import json

    from ..tasks import TASKS, canonical_task

    tasks = [canonical_task(args.task)] if args.task else list(TASKS)
    rows = [row for task in tasks for row in _rows(task)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0


def _rows(task: str) -> list[dict]:
    from ..models.registry import CPU_DEFAULT_MODEL, DEFAULT_MODEL, all_specs

    rows = []
    for spec in all_specs():
        if task not in spec.tasks:
            continue
        marks = [m for m, table in (("default", DEFAULT_MODEL), ("cpu", CPU_DEFAULT_MODEL)) if table[task] == spec.name]
        rows.append({
            "name": spec.name, "task": task, "parameters_millions": round(spec.parameters / 1e6, 2),
            "input_size": _input_size(spec), "source": spec.source, "gradcam": spec.gradcam_layer is not None,
            "default": "default" in marks, "cpu_default": "cpu" in marks, "description": spec.description,
        })
    return rows


def _input_size(spec) -> str:
    if spec.family == "classifier":
        return f"{spec.input_size} (fixed)" if spec.fixed_input_size else f"{spec.input_size} crop (any)"
    if spec.family == "ssdlite":
        return "320x320 (fixed)"
    return "min_size 600, max_size 1333"


def _table(rows: list[dict]) -> str:
    header = ("task", "model_name", "params (M)", "input size", "source", "Grad-CAM", "marks")
    lines = [(r["task"], r["name"], f"{r['parameters_millions']:.1f}", r["input_size"], r["source"],
              "yes" if r["gradcam"] else ("-" if r["task"].endswith(("detection", "segmentation")) else "no"),
              ",".join(m for m, on in (("default", r["default"]), ("cpu", r["cpu_default"])) if on))
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line).rstrip() for line in lines]
    out.append("\ndefault: used when no model_name is given (Azure's default; Azure's detection default yolov5 "
               "is not available). cpu: trained by --preset cpu. Grad-CAM: classification only, CNNs only.")
    return "\n".join(out)
