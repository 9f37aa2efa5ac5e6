"""The run folder (DESIGN.md "The run folder and the model folder"): its layout, atomic writes,
the resumable checkpoint, ``history.csv`` and the curve plots.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..errors import UsageError, VisionMLError
from ..fileio import write_bytes_atomic, write_error

MODEL_DIR, CONFIG, HISTORY, METRICS = "model", "config.json", "history.csv", "metrics.json"
CHECKPOINT, PLOTS, INVALID_LINES = "checkpoints/last.pt", "plots", "invalid_lines.jsonl"


def next_free_dir(root: str | Path = "runs", stem: str = "train") -> Path:
    """``runs/train``, then ``runs/train2``, ``runs/train3``... (the first that does not exist)."""
    root = Path(root)
    candidate, n = root / stem, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stem}{n}"
    return candidate


def check(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that has no checkpoint. Writes nothing."""
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise UsageError(f"--resume: {run_dir / CHECKPOINT} does not exist, so there is nothing to "
                             f"resume. Start the run without --resume (or point --output at the run folder).")
        return
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"{run_dir} already exists and is not empty; visionml will not overwrite a run. "
                         f"Pass --resume to continue it, or choose another --output.")


def create(run_dir: Path) -> None:
    for folder in (run_dir / "checkpoints", run_dir / PLOTS):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(folder, exc) from None


def write_json(path: Path, obj) -> None:
    """A run file (config.json, metrics.json) on disk before training goes on."""
    fileio.write_json(path, obj, fsync=True)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VisionMLError(f"{path}: cannot read it ({exc})") from exc


# ---- the checkpoint: a plain dict of state dicts, tensors and numbers (loads with weights_only) ----

def epoch_checkpoint(run_dir: Path, epoch: int) -> Path:
    """Where ``checkpoint_frequency`` keeps epoch ``epoch``'s checkpoint (same format as last.pt)."""
    return Path(run_dir) / Path(CHECKPOINT).parent / f"epoch_{epoch:03d}.pt"


def save_checkpoint(path: Path, state: dict, copies=()) -> None:
    """``state`` to ``path`` (and the same bytes to each of ``copies``), each written atomically.
    The copies first: a kill between two writes then leaves ``path`` at the previous epoch, whose
    resume writes the copies again (``path`` first would lose a kept copy for good)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    for target in (*copies, path):
        write_bytes_atomic(target, buffer.getvalue(), fsync=True)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and what to do
        raise VisionMLError(f"{path}: not a readable visionml checkpoint ({exc}). "
                            f"Start a new run instead of --resume.") from exc


def rng_state() -> dict:
    """Every random generator training touches, as tensors and plain numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- history.csv and the curves ----

def write_history(path: Path, rows: list[dict]) -> None:
    """All epochs so far, one row each; columns are the union of keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_bytes_atomic(path, out.getvalue().encode(), fsync=True)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def save_curves(rows: list[dict], plots_dir: Path, primary: str) -> list[Path]:
    """``loss.png`` (training losses per epoch) and ``metrics.png`` (validation metrics per epoch)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state to change

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    epochs = [row["epoch"] for row in rows]
    loss_keys = [k for k in rows[0] if k.startswith("train_")] if rows else []
    metric_keys = [primary] + [k for k in ("precision", "recall", "f1_score", "mean_average_precision")
                               if k != primary]
    for name, keys, ylabel in (("loss.png", loss_keys, "training loss"), ("metrics.png", metric_keys, "validation")):
        series = {k: [(e, r[k]) for e, r in zip(epochs, rows) if isinstance(r.get(k), (int, float))] for k in keys}
        series = {k: v for k, v in series.items() if v}
        if not series:
            continue
        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.add_subplot()
        for key, points in series.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=key.removeprefix("train_"), linewidth=2 if key == primary else 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png")
        write_bytes_atomic(plots_dir / name, png.getvalue(), fsync=True)
        written.append(plots_dir / name)
    return written
