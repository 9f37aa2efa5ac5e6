"""``visionml view DATA``: a web page over a dataset, its problems and a model's mistakes."""

from __future__ import annotations

import argparse

from ._args import add_datastore, add_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "view", help="browse a dataset, its invalid lines and a model's mistakes in a web page",
        description="Serve a page over DATA: thumbnails with the ground truth drawn, filters by class and by "
        "problem, every invalid line as FILE:LINE: field: reason, and the audit's figures (duplicates, "
        "balance, sizes). With --model (scored here, as `visionml evaluate` scores) or --predictions (a "
        "`visionml predict` output): per image the true positives, false positives and misses from the "
        "evaluator's own matching, a confusion matrix whose cells open their images, and a ranking of likely "
        "label mistakes, exportable as JSONL in the training schema. Thumbnails are cached in "
        "~/.cache/visionml/thumbnails (or under $VISIONML_CACHE_DIR).")
    parser.add_argument("data", metavar="DATA", help="a JSONL file, an MLTable file or an MLTable folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="MODEL_DIR", help="a model folder (RUN/model) to score DATA with")
    source.add_argument("--predictions", metavar="PREDS.jsonl",
                        help="the answers of `visionml predict --output` for DATA's images, matched by file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=5002, help="port (default 5002)")
    parser.add_argument("--task", help="the task the data is for (inferred from the labels when left out)")
    add_datastore(parser, "map an azureml:// datastore in DATA to a local folder (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="with --model, change an inference setting (e.g. --set box_score_threshold=0.5); "
                        "with --predictions, the matching's --set validation_iou_threshold=0.75 (default 0.5); "
                        "repeatable")
    add_device(parser)
    parser.add_argument("--cache-dir", metavar="DIR", help="where thumbnails are kept (default: the user's cache)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import logging
    import sys

    import uvicorn

    from ..config import parse_set_arguments
    from ..data.resolve import parse_datastores
    from ..data.thumbnails import ThumbnailCache
    from ..view import build_view, checked_view, create_view_app, lines_view

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    datastores = parse_datastores(args.datastore)
    complete = None
    if args.model is None and args.predictions is None:
        # Open on the lines alone; the images are checked (most of the time a large dataset takes)
        # while the page is already showing them.
        view = lines_view(args.data, task=args.task, datastores=datastores)

        def complete(first):
            return _report(checked_view(first, task=args.task, datastores=datastores))
    else:
        view = _report(build_view(args.data, task=args.task, datastores=datastores, model=args.model,
                                  predictions=args.predictions, overrides=parse_set_arguments(args.overrides) or None,
                                  device=args.device, progress=sys.stderr.isatty()))
    app = create_view_app(view, thumbnails=ThumbnailCache(args.cache_dir), complete=complete)
    print(f"visionml view: open http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


def _report(view):
    training = view.training or view.loaded
    problems = training.problems
    print(f"{len(training.records)} images, {len(problems)} problem(s) on "
          f"{len({(p.source, p.line) for p in problems})} line(s) of {', '.join(training.sources)}", flush=True)
    return view
