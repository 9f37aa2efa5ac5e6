"""``visionml weights {download,install,list}``: pretrained weights for machines without network."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights", help="download, install and list pretrained weights (for offline machines)",
        description="Pretrained weights for a machine without network, in two steps: `visionml weights download "
        "MODEL... -o DIR` on a connected machine fetches the files training starts from and records each one's "
        "URL, size and SHA-256 in DIR/weights.json; copy DIR over, and `visionml weights install DIR` checks "
        "every file and puts it where training reads it (torch's hub cache, $TORCH_HOME/hub/checkpoints). "
        "`visionml weights list` shows which models have theirs. See docs/weights.md.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                    help="download (connected machine), install (offline machine) or list")
    actions.required = True

    down = actions.add_parser(
        "download", help="fetch the pretrained files of some models into a folder",
        description="Fetch the pretrained weights files the registry names for MODEL... (torchvision's and "
        "timm's published files) into DIR, and write DIR/weights.json with each file's URL, size and "
        "SHA-256. Files already in DIR that match weights.json are kept, so the command can be rerun or "
        "extended with more models.")
    down.add_argument("models", nargs="*", metavar="MODEL", help="registry names (see `visionml models`)")
    down.add_argument("--task", help="also every registered model for this task")
    down.add_argument("--output", "-o", metavar="DIR", required=True, help="the folder to write the files into")
    down.add_argument("--base-url", metavar="URL",
                      help="fetch every file from URL/<file name> (a mirror, e.g. another download folder served "
                      "over HTTP, or file:///path) instead of where torchvision and timm publish it; default: "
                      "$VISIONML_WEIGHTS_BASE_URL when set")
    down.set_defaults(func=run_download)

    inst = actions.add_parser(
        "install", help="check a download folder and put its files where training reads them",
        description="Check every file DIR/weights.json lists (size and SHA-256) and copy it where training "
        "reads it: torch's hub cache ($TORCH_HOME/hub/checkpoints, torch.hub.get_dir()), where visionml keeps "
        "timm's weights too. Needs no network. A missing or changed file stops the install before anything is "
        "copied, naming the file.")
    inst.add_argument("folder", metavar="DIR", help="a folder written by `visionml weights download`")
    inst.set_defaults(func=run_install)

    show = actions.add_parser(
        "list", help="show, per registered model, whether its pretrained weights are here",
        description="Per registered model: its pretrained weights file, where training reads it, and whether "
        "it is there.")
    show.add_argument("--task", help="only the models for this task")
    show.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    show.set_defaults(func=run_list)
    return parser


def run_download(args) -> int:
    from ..errors import UsageError
    from ..models.registry import models_for
    from ..models.weights_store import download

    names = list(args.models) + (models_for(args.task) if args.task else [])
    if not names:
        raise UsageError("name at least one MODEL or --task T (`visionml models` lists them)")
    manifest = download(names, args.output, base=args.base_url, log=_log)
    print(f"{len(manifest['files'])} weights files in {args.output}/weights.json. Copy {args.output} to the "
          f"offline machine and run: visionml weights install {args.output}")
    return 0


def run_install(args) -> int:
    from ..models.weights_store import install

    installed = install(args.folder, log=_log)
    print(f"{len(installed)} weights files installed; `visionml weights list` shows which models can now train "
          f"from pretrained weights")
    return 0


def run_list(args) -> int:
    import json

    from ..models.weights_store import status

    rows = status(args.task)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    missing = [r["name"] for r in rows if r["weights"] and not r["present"]]
    if missing:
        print(f"\n{len(missing)} of {len(rows)} models have no pretrained weights here. On a connected machine: "
              f"visionml weights download {' '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} -o DIR; "
              f"copy DIR here and run: visionml weights install DIR (or train with --no-pretrained)")
    return 0


def _table(rows: list[dict]) -> str:
    header = ("model_name", "task", "weights", "where")
    lines = [(r["name"], ",".join(r["tasks"]),
              "present" if r["present"] else ("missing" if r["weights"] else "none"),
              r["path"] or "-") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    return "\n".join(out + [fmt.format(*line).rstrip() for line in lines])


def _log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
