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

    from ..tasks import TASKS, get_task

    tasks = [get_task(args.task)] if args.task else list(TASKS.values())
    rows = [row for task in tasks for row in _rows(task)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0


def _rows(task) -> list[dict]:
    from ..models.registry import all_specs

    rows = []
    for spec in all_specs():
        if task not in spec.tasks:
            continue
        rows.append({
            "name": spec.name, "task": task.name, "parameters_millions": round(spec.parameters / 1e6, 2),
            "input_size": spec.family.describe_input(spec), "source": spec.source,
            "gradcam": task.explainable and spec.gradcam_layer is not None, "explainable": task.explainable,
            "default": spec.name == task.default_model, "cpu_default": spec.name == task.cpu_preset.get("model_name"),
            "description": spec.description,
        })
    return rows


def _table(rows: list[dict]) -> str:
    header = ("task", "model_name", "params (M)", "input size", "source", "Grad-CAM", "marks")
    lines = [(r["task"], r["name"], f"{r['parameters_millions']:.1f}", r["input_size"], r["source"],
              "yes" if r["gradcam"] else ("no" if r["explainable"] else "-"),
              ",".join(m for m, on in (("default", r["default"]), ("cpu", r["cpu_default"])) if on))
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line).rstrip() for line in lines]
    out.append("\ndefault: used when no model_name is given (Azure's default; Azure's detection default yolov5 "
               "is not available). cpu: trained by --preset cpu. Grad-CAM: classification only, CNNs only.")
    return "\n".join(out)
