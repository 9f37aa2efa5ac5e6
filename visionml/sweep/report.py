"""What a sweep leaves for the user: ``RUN/trials.csv`` (one row per trial), ``RUN/best/`` (the
best trial's model, its metrics and ``trial.json``), the leaderboard printed at the end and the
progress plot. Any worker may rewrite them at any time, so each is replaced in one rename.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from optuna.trial import TrialState

from ..fileio import replace_folder, staging_folder, write_bytes_atomic, write_json
from .study import settings_of


def format_hp(hp: dict) -> str:
    """``learning_rate=0.001, model_name=resnet18`` (or ``(defaults)``) for logs and the leaderboard."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items()) or "(defaults)"


def _rows(study) -> tuple[list[dict], list[str]]:
    trials = [t for t in study.get_trials(deepcopy=False)
              if not t.user_attrs.get("over_budget") and t.state != TrialState.WAITING]
    names: list[str] = []
    for t in trials:
        for k in t.user_attrs.get("hyperparameters", {}):
            if k not in names:
                names.append(k)
    rows = []
    for t in trials:
        hp = t.user_attrs.get("hyperparameters", {})
        status = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        rows.append({
            "trial": t.number, "status": status,
            "primary_metric": "" if t.value is None else round(t.value, 6),
            **{n: hp.get(n, "") for n in names},
            "metric_per_evaluation": json.dumps({int(k): round(v, 6) for k, v in sorted(t.intermediate_values.items())}),
            "seconds": t.user_attrs.get("seconds", ""),
            "worker": t.user_attrs.get("worker", ""),
            "error": t.user_attrs.get("error", ""),
            "run_dir": t.user_attrs.get("run_dir", ""),
        })
    return rows, names


def write_outputs(study, run_dir: Path) -> None:
    """``trials.csv`` from the study as it is now, and ``best/`` when the best trial changed."""
    rows, names = _rows(study)
    fields = ["trial", "status", "primary_metric", *names, "metric_per_evaluation", "seconds", "worker", "error",
              "run_dir"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(run_dir / "trials.csv", buf.getvalue().encode())  # unique temp name: workers may race
    _update_best(study, run_dir)


def _update_best(study, run_dir: Path) -> None:
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return
    src = Path(best.user_attrs.get("run_dir", "")) / "run" / "model"
    marker = run_dir / "best" / "trial.json"
    if marker.exists() and json.loads(marker.read_text()).get("trial") == best.number:
        return
    if not src.is_dir():
        return
    with staging_folder(run_dir / "best") as staging:
        shutil.copytree(src, staging / "model")
        metrics = src.parent / "metrics.json"
        if metrics.exists():
            shutil.copy2(metrics, staging / "metrics.json")
        write_json(staging / "trial.json", {"trial": best.number, "primary_metric": best.value,
                                            "hyperparameters": best.user_attrs.get("hyperparameters", {})})
        try:
            replace_folder(staging, run_dir / "best")
        except OSError:  # another worker on this machine swapped its own in at the same moment
            pass


def leaderboard(study, top: int = 10) -> str:
    rows, names = _rows(study)
    done = sorted((r for r in rows if r["primary_metric"] != ""), key=lambda r: -float(r["primary_metric"]))
    settings = settings_of(study)
    lines = [f"{'rank':>4} {'trial':>5} {settings.primary_metric:>24} {'status':>9}  hyperparameters"]
    for i, r in enumerate(done[:top], 1):
        hp = format_hp({n: r[n] for n in names if r[n] != ""})
        lines.append(f"{i:>4} {r['trial']:>5} {float(r['primary_metric']):>24.4f} {r['status']:>9}  {hp}")
    failed = [r for r in rows if r["status"] == "fail"]
    if failed:
        lines.append(f"{len(failed)} trial(s) failed: see the error column of trials.csv")
    return "\n".join(lines)


def plot_progress(study, path: Path) -> Path | None:
    """Primary metric per trial against time, with the best so far."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.value is not None and t.datetime_complete]
    if not trials:
        return None
    from matplotlib.figure import Figure

    trials.sort(key=lambda t: t.datetime_complete)
    t0 = min(t.datetime_start for t in trials)
    xs = [(t.datetime_complete - t0).total_seconds() / 60 for t in trials]
    ys = [t.value for t in trials]
    best = [max(ys[: i + 1]) for i in range(len(ys))]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(xs, ys, label="trial")
    for x, y, t in zip(xs, ys, trials):
        ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.step(xs, best, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("minutes since the sweep started")
    ax.set_ylabel(settings_of(study).primary_metric)
    ax.set_title(f"{study.study_name}: primary metric per trial")
    ax.legend()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(path, png.getvalue())
    return path
