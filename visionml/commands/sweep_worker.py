"""visionml sweep-worker: join a running sweep from another machine."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep-worker", help="join a sweep stored in a shared database",
        description="Run trials of a sweep that `visionml run --storage URL` started, from this machine.")
    p.add_argument("--storage", required=True, metavar="URL", help="the sweep's database URL")
    p.add_argument("--study", required=True, metavar="NAME", help="the study name `visionml run` printed")
    p.add_argument("--output", metavar="DIR", help="where this machine writes its trials (default: the sweep's run folder)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once on this machine "
                   "(default: the job's max_concurrent_trials)")
    p.set_defaults(func=run)


def run(args) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # visionml prints its own progress lines
    from ..sweep.jobs import join_sweep

    return join_sweep(args.storage, args.study, args.output, concurrency=args.max_concurrent)
