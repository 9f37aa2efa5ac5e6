"""visionml run JOB.yml: run an Azure AutoML image job YAML (a sweep) on this machine."""

from __future__ import annotations

from ._args import add_device


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run an Azure AutoML image job YAML (trials, limits, early termination)",
        description="Run the AutoML image job YAML you would submit with `az ml job create`: the same "
        "trials, limits, early termination and primary metric; the best model lands in RUN/best/model.")
    p.add_argument("job", metavar="JOB.yml", help="the job YAML (type: automl, an image task)")
    p.add_argument("--output", "-o", metavar="DIR", help="the sweep's run folder (default: runs/<job name>)")
    p.add_argument("--resume", action="store_true", help="continue a stopped sweep in --output")
    p.add_argument("--storage", metavar="URL", help="a database URL shared with other machines (postgresql://user:pw@host/db); "
                   "default: a journal file in the run folder")
    p.add_argument("--preset", metavar="NAME", help="a named group of hyperparameters under the job's own (e.g. cpu)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="train from random weights (no downloads)")
    add_device(p)
    p.add_argument("--seed", type=int, default=0, help="seeds the sampler and every trial (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # visionml prints its own progress lines
    from ..sweep.jobs import run_job

    return run_job(args.job, args.output, resume=args.resume, storage=args.storage, preset=args.preset,
                   pretrained=args.pretrained, device=args.device, seed=args.seed)
