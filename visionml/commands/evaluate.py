"""``visionml evaluate``: Azure's metrics (and plots) of a model folder on labelled data."""

from __future__ import annotations

import argparse

from ._args import add_backend, add_datastore, add_device, add_inference_speed, int_at_least, load_predictor


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="compute Azure's metrics of a model folder on labelled JSONL data",
        description="Score every image of DATA (a JSONL file or an MLTable) with the model folder and "
        "report Azure AutoML's metrics for its task (primary: accuracy, iou or "
        "mean_average_precision). Prints a summary; --output writes every metric as JSON, "
        "--plots writes PNG plots (confusion matrix, PR and ROC curves, AP per class). With --precision bf16 "
        "(or fp16) it also scores in fp32 and reports the primary metric in both, with the change.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model folder (RUN/model)")
    parser.add_argument("--data", required=True, metavar="DATA", help="labelled JSONL file or MLTable")
    parser.add_argument("--output", "-o", metavar="FILE", help="write the metrics as JSON (e.g. metrics.json)")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots into this folder")
    add_datastore(parser, "map an azureml:// datastore in DATA to a local folder (repeatable)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                        help="images per forward pass (default: the model's validation_batch_size)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change an inference setting, e.g. --set box_score_threshold=0.05 (repeatable)")
    add_backend(parser)
    add_device(parser)
    add_inference_speed(parser)
    parser.set_defaults(func=run)
    return parser




def run(args) -> int:
    import sys

    from ..data.resolve import parse_datastores
    from ..fileio import write_json
    from ..metrics.evaluate import evaluate_predictor

    notes = []
    predictor = load_predictor(args, notes.append)  # a bf16 that runs as fp32 is said once, in the notes

    def evaluate(scorer, plots_dir=None) -> dict:
        return evaluate_predictor(scorer, args.data, datastores=parse_datastores(args.datastore), plots_dir=plots_dir,
                                  batch_size=args.batch_size, progress=sys.stderr.isatty())

    metrics = {**evaluate(predictor, args.plots), "model": str(args.model)}
    ran = getattr(predictor.backend, "precision", None)
    if ran is not None and ran.name != "fp32":  # what bf16 (or fp16) costs, measured on the same data
        primary = metrics["primary_metric"]
        fp32 = evaluate(predictor.at_precision("fp32"))[primary]
        metrics["inference_precision"] = {"name": ran.name, "fp32": fp32, ran.name: metrics[primary],
                                          "change": metrics[primary] - fp32}
    if notes:
        metrics["notes"] = [*metrics.get("notes", []), *notes]
    if args.output:
        write_json(args.output, metrics)
    print(summary(metrics))
    if args.output:
        print(f"metrics: {args.output}")
    if args.plots:
        print(f"plots:   {args.plots}")
    return 0


def summary(metrics: dict) -> str:
    """A few headline numbers, the primary one marked; for detectors what the primary is computed on
    and, beside it, COCO's own summary; then one row per class."""
    from ..tasks import get_task

    task, primary = metrics["task"], metrics["primary_metric"]
    count = metrics.get("num_samples", metrics.get("num_images"))
    lines = [f"{task}: {count} images of {metrics['data']}"]
    for name in get_task(task).headline_metrics:
        mark = "  (primary)" if name == primary else ""
        lines.append(f"  {name:<26}{_fmt(metrics.get(name))}{mark}")
    if "coco" in metrics:
        lines.extend(_detection_definitions(metrics))
    lines.append("")
    lines.extend(_per_label_table(metrics))
    lines.extend(f"note: {n}" for n in metrics.get("notes", []))
    if "inference_precision" in metrics:
        ran = metrics["inference_precision"]
        lines.append(f"{primary} in {ran['name']}: {_fmt(ran[ran['name']])}, in fp32: {_fmt(ran['fp32'])} "
                     f"(change {ran['change']:+.4f})")
    lines.append(f"{primary}: {_fmt(metrics[primary])}")
    return "\n".join(lines)


def _detection_definitions(metrics: dict) -> list[str]:
    """Which boxes and which AP each number is (docs/metrics.md): Azure's primary over what the
    deployed model returns, COCO's summary over every box down to the evaluation floor."""
    from ..models.detection import AP_SCORE_FLOOR

    threshold, kind = metrics.get("score_threshold"), metrics["metric_type"]
    one, many = ("prediction", "predictions") if metrics["iou_type"] == "segm" else ("box", "boxes")
    deployed = f"the {many} scoring >= {threshold:g}" if threshold is not None else f"every {one}"
    ap = "COCO's AP at IoU 0.5" if kind == "coco" else f"all-point VOC AP at IoU {metrics['iou_threshold']:g}"
    floor = f"down to score {min(threshold, AP_SCORE_FLOOR):g}" if threshold is not None else "given"
    coco = metrics["coco"]
    return [f"  (Azure's {kind} mean_average_precision: {ap} over {deployed}, {metrics['iou_type']})",
            f"  {'COCO AP@[.5:.95] / AP50':<26}{_fmt(coco['AP'])} / {_fmt(coco['AP50'])}"
            f"  (pycocotools summary over every {one} {floor})"]


def _per_label_table(metrics: dict) -> list[str]:
    if "coco" in metrics:
        columns = (("AP", "average_precision"), ("precision", "precision"), ("recall", "recall"),
                   ("GT", "num_ground_truth"))
    else:
        columns = (("precision", "precision"), ("recall", "recall"), ("F1", "f1_score"), ("support", "support"))
    rows = metrics["per_label"]
    width = max([len("label")] + [len(name) for name in rows])
    out = [f"  {'label':<{width}}" + "".join(f"{head:>11}" for head, _ in columns)]
    for name, values in rows.items():
        out.append(f"  {name:<{width}}" + "".join(f"{_fmt(values.get(key)):>11}" for _, key in columns))
    return out + [""]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.4f}"
