"""Benchmark `visionml view` on 10,000 images (issue 17): the time from starting the command to the
first screen of thumbnails drawn in Debian's Chromium, with an empty thumbnail cache (cold: the
first visit makes the thumbnails it shows) and with the cache of that first run (warm).

Per open: the server answering (the dataset's lines read), the page (navigation to the document
parsed, the grid built and every thumbnail on screen decoded) and the two together from the
command's start; then, also from the start, when the page has the document with every image
checked as training checks them (header and end marker), which the server does in the background
once the first screen is served. The browser and its page are started before the command, so
their own start-up is not counted. Then, in a fresh process, where the server's start goes
(imports, the lines read, the same read with every image checked, the page's document), and the
load average before and after (the machine may be shared). Generates its data in a temporary folder.

Run: .venv/bin/python benchmarks/bench_view.py [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from PIL import Image, ImageDraw

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LABELS = ("can", "carton", "milk_bottle", "water_bottle")


def make_dataset(root: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """``n`` JPEGs with one to three coloured rectangles each, and their detection JSONL."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    with open(root / "data.jsonl", "wb") as out:
        for i in range(n):
            image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            boxes = []
            for _ in range(rng.randint(1, 3)):
                x0, y0 = rng.random() * 0.6, rng.random() * 0.6
                x1, y1 = x0 + 0.1 + rng.random() * 0.3, y0 + 0.1 + rng.random() * 0.3
                draw.rectangle([x0 * width, y0 * height, x1 * width, y1 * height],
                               fill=tuple(rng.randrange(256) for _ in range(3)))
                boxes.append({"label": rng.choice(LABELS), "topX": round(x0, 4), "topY": round(y0, 4),
                              "bottomX": round(x1, 4), "bottomY": round(y1, 4)})
            name = f"images/{i:06d}.jpg"
            image.save(root / name, quality=85)
            out.write(orjson.dumps({"image_url": name, "image_details": {"format": "jpg", "width": width,
                                                                          "height": height}, "label": boxes}) + b"\n")
    return root / "data.jsonl"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    """Whether the server answers ``GET /`` yet. http.client, not httpx: an httpx client costs
    about 0.15 s of CPU to create (its TLS context), which the probe would take from the server."""
    import http.client

    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False


def open_once(data: Path, cache: Path, browser) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # no browser cache from a run before
    page = context.new_page()  # opened before the clock starts: the browser's own start is not the view's
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "visionml", "view", str(data), "--port", str(port),
                             "--cache-dir", str(cache)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not answers(port):
            time.sleep(0.02)
            if proc.poll() is not None:
                raise RuntimeError(f"visionml view exited with {proc.returncode}")
        ready = time.perf_counter()
        page.goto(url + "/")
        page.wait_for_selector("body[data-shown=true]", timeout=120_000)
        page.wait_for_function("""() => {
            const tiles = [...document.querySelectorAll('#grid .tile img')];
            const onScreen = tiles.filter(i => i.getBoundingClientRect().top < innerHeight);
            return tiles.length > 0 && onScreen.every(i => i.complete && i.naturalWidth > 0);
        }""", timeout=120_000, polling=20)
        shown = time.perf_counter()
        tiles = page.evaluate("document.querySelectorAll('#grid .tile').length")
        on_screen = page.evaluate("[...document.querySelectorAll('#grid .tile img')]"
                                  ".filter(i => i.getBoundingClientRect().top < innerHeight).length")
        page.wait_for_selector("body[data-ready=true]", timeout=300_000)
        checked = time.perf_counter()
    finally:
        context.close()
        proc.terminate()
        proc.wait()
    return {"server": ready - start, "page": shown - ready, "total": shown - start, "tiles": tiles,
            "on_screen": on_screen, "checked": checked - start}


STAGES = """
import sys, time
t0 = time.perf_counter()
import uvicorn, visionml.cli
from visionml.view import build_view, create_view_app, page_json
from visionml.data.reader import load_dataset
t1 = time.perf_counter()
load_dataset(sys.argv[1], None, check_images=False)
t2 = time.perf_counter()
view = build_view(sys.argv[1])
t3 = time.perf_counter()
page_json(view)
t4 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f} {t4 - t3:.2f}")
"""


def stages(data: Path) -> dict:
    """Where the server's start goes, in a fresh process: imports, the lines read alone, the read
    as the view does it (every image's header and end marker checked), the page's document."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", STAGES, str(data)], env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return dict(zip(("imports", "lines", "read with image checks", "document"), map(float, out)))


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", default="640x480", help="image size WxH (default 640x480)")
    parser.add_argument("--rounds", type=int, default=2, help="warm opens after the cold one (default 2)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        data = make_dataset(tmp / "data", args.n, width, height)
        print(f"made {args.n} images of {width}x{height} in {time.perf_counter() - t:.1f} s")
        print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            runs = [("cold (empty thumbnail cache)", open_once(data, tmp / "cache", browser))]
            runs += [(f"warm {k + 1} (thumbnails cached)", open_once(data, tmp / "cache", browser))
                     for k in range(args.rounds)]
            browser.close()
        parts = stages(data)
        print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("\n| open | server answering s | page drawn s | total s | tiles built | on screen | every image checked s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in runs:
        print(f"| {name} | {r['server']:.2f} | {r['page']:.2f} | **{r['total']:.2f}** | {r['tiles']} | {r['on_screen']} "
              f"| {r['checked']:.2f} |")
    print("\nthe server's start, in a fresh process (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
