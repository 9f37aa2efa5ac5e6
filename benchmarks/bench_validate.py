"""Benchmark `visionml validate` (issue 2, data layer).

1. `validate --no-image-check` on a 200,000-line detection JSONL (3 boxes a line) against a plain
   `json.loads` loop and an orjson loop over the same file, interleaved in one run (the machine
   may be shared: compare the ratios, not the absolute figures across runs).
2. Image checks (open + header + end marker, no decode) on small JPEGs.

Generates its own data in a temporary folder. Run: .venv/bin/python benchmarks/bench_validate.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from PIL import Image

from visionml.cli import main as visionml_main
from visionml.data.images import check_image


def make_detection_jsonl(path: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for i in range(lines):
            boxes = []
            for _ in range(3):
                x0, y0 = rng.random() * 0.6, rng.random() * 0.6
                boxes.append({"label": rng.choice(("can", "carton", "milk_bottle", "water_bottle")),
                              "topX": round(x0, 4), "topY": round(y0, 4), "bottomX": round(x0 + 0.05 + rng.random() * 0.3, 4),
                              "bottomY": round(y0 + 0.05 + rng.random() * 0.3, 4), "isCrowd": 0})
            out.write(orjson.dumps({"image_url": f"images/{i:07d}.jpg",
                                    "image_details": {"format": "jpg", "width": "640px", "height": "480px"},
                                    "label": boxes}) + b"\n")


def make_jpegs(folder: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(count):
        name = f"images/{i:05d}.jpg"
        Image.new("RGB", (64, 48), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(folder / name)
        lines.append(orjson.dumps({"image_url": name, "label": f"c{i % 5}"}))
    (folder / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder / "train.jsonl"


def json_loads_loop(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        out = [json.loads(line) for line in f if line.strip()]
    return len(out)


def orjson_loop(path: Path) -> int:
    with open(path, "rb") as f:
        out = [orjson.loads(line) for line in f if line.strip()]
    return len(out)


def validate_cli(path: Path, *extra: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        code = visionml_main(["validate", str(path), *extra])
    if code != 0:
        raise SystemExit(f"validate returned {code} on the benchmark data")
    return 0


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "det.jsonl"
        make_detection_jsonl(data, args.lines)
        size_mb = data.stat().st_size / 1e6
        print(f"# validate --no-image-check: {args.lines:,} detection lines, 3 boxes each, {size_mb:.0f} MB")
        warm = tmp / "warm.jsonl"
        make_detection_jsonl(warm, 100)
        validate_cli(warm, "--no-image-check")  # imports (numpy, Pillow) are start-up, timed separately below
        rows = {"json.loads loop (keeps results)": [], "orjson loop (keeps results)": [],
                "visionml validate --no-image-check (in process)": []}
        for _ in range(args.rounds):  # interleaved so that load on a shared machine hits all alike
            rows["json.loads loop (keeps results)"].append(timed(json_loads_loop, data))
            rows["orjson loop (keeps results)"].append(timed(orjson_loop, data))
            rows["visionml validate --no-image-check (in process)"].append(
                timed(validate_cli, data, "--no-image-check"))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "visionml", "validate", str(data), "--no-image-check"],
                       check=True, stdout=subprocess.DEVNULL)
        process_s = time.perf_counter() - start

        base = rows["json.loads loop (keeps results)"]
        print("| what | median s | lines/s | ratio vs json.loads (per round) |")
        print("| --- | ---: | ---: | --- |")
        for name, times in rows.items():
            ratios = ", ".join(f"{b / t:.2f}" for b, t in zip(base, times))
            med = statistics.median(times)
            print(f"| {name} | {med:.2f} | {args.lines / med:,.0f} | {ratios} |")
        print(f"| visionml validate --no-image-check (new process, incl. start-up) | {process_s:.2f} | "
              f"{args.lines / process_s:,.0f} | - |")

        src = make_jpegs(tmp / "jpegs", args.images)
        paths = sorted((tmp / "jpegs" / "images").iterdir())
        print(f"\n# image checks: {args.images:,} JPEGs of 64x48")
        checks, cli_runs, lines_only = [], [], []
        for _ in range(args.rounds):
            checks.append(timed(lambda: [check_image(p) for p in paths]))
            cli_runs.append(timed(validate_cli, src))
            lines_only.append(timed(validate_cli, src, "--no-image-check"))
        print("| what | median s | images/s |")
        print("| --- | ---: | ---: |")
        print(f"| check_image loop (one thread) | {statistics.median(checks):.3f} | "
              f"{args.images / statistics.median(checks):,.0f} |")
        print(f"| visionml validate (lines + image checks, in process) | {statistics.median(cli_runs):.3f} | "
              f"{args.images / statistics.median(cli_runs):,.0f} |")
        image_part = statistics.median(c - n for c, n in zip(cli_runs, lines_only))
        print(f"| of which image checks (validate minus --no-image-check) | {image_part:.3f} | "
              f"{args.images / max(image_part, 1e-9):,.0f} |")
        print(f"\ncpu: {os.cpu_count()} logical, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
