"""``visionml audit``: what is wrong with a dataset that no single line shows.

* near-duplicate images: a perceptual hash per image (``imagehash.phash``, 64 bits) and every
  pair within ``max_distance`` differing bits, grouped; byte-identical files are marked;
* the same image in training and validation (the same file, a copy, or a re-encoded or resized
  copy), which makes validation metrics flatter the model;
* class balance, box sizes and aspect ratios (detection, segmentation) and images per size.

Records come from the reader (``load_dataset``: the same lines training keeps; invalid ones are
counted and left to ``visionml validate``). ``audit_dataset`` returns plain JSON;
``audit_plots`` draws its figures.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..tasks import get_task
from .images import local_path

DEFAULT_MAX_DISTANCE = 4
"""Bits two 64-bit perceptual hashes may differ in and still be the same picture: re-encoding,
resizing and mild colour changes stay within 2-4; different photos of one scene differ by 10+."""
HASH_DECODE_SIZE = 128  # phash reads a 32x32 copy: decoding at 128 pixels is plenty
BRUTE_FORCE_BELOW = 4000
SIZE_BINS = np.array([0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 1e9])
"""Box sizes (square root of the area, pixels); COCO calls under 32 small and over 96 large."""
ASPECT_BINS = np.linspace(-4.0, 4.0, 33)
"""log2(width / height) of boxes: from 1:16 (tall) to 16:1 (wide), in quarter octaves."""
SPLITS = ("training", "validation")
MAX_LISTED = 200


def audit_dataset(data, validation=None, *, task=None, datastores=None, max_distance: int = DEFAULT_MAX_DISTANCE,
                  workers: int | None = None, loaded=None) -> dict:
    """The audit of ``data`` (and of ``validation`` against it) as a JSON-ready dict.
    ``loaded``: ``data`` already read by ``load_dataset`` (``visionml view`` passes its own)."""
    from .reader import load_dataset

    datastores = datastores or {}
    train = loaded if loaded is not None else load_dataset(data, task, datastores=datastores)
    splits = {"training": train}
    if validation is not None:
        splits["validation"] = load_dataset(validation, task or train.task, datastores=datastores)
    task = get_task(train.task) if train.task else None
    entries = [(name, record) for name, split in splits.items() for record in split.records]
    groups, leaks, unreadable = _duplicates(entries, max_distance, workers)
    report = {
        "task": task.name if task else None,
        "data": {name: split.sources for name, split in splits.items()},
        "images": {name: len(split.records) for name, split in splits.items()},
        "invalid_lines": {name: len({(p.source, p.line) for p in split.problems}) for name, split in splits.items()},
        "max_distance": max_distance,
        "near_duplicates": groups[:MAX_LISTED],
        "near_duplicate_groups": len(groups),
        "train_validation_leaks": leaks[:MAX_LISTED] if validation is not None else None,
        "train_validation_leak_count": len(leaks) if validation is not None else None,
        "unreadable": unreadable[:MAX_LISTED],
        "class_balance": {name: _balance(task, split) for name, split in splits.items()} if task else {},
        "image_sizes": {name: _image_sizes(split.records) for name, split in splits.items()},
    }
    if task is not None and task.objects:
        report["boxes"] = {name: _box_stats(split.records) for name, split in splits.items()}
    return report


# ----------------------------------------------------------------------------- duplicates

def _duplicates(entries, max_distance: int, workers: int | None):
    """(near-duplicate groups, training/validation leaks, unreadable images) of ``entries``,
    ``(split, record)`` pairs. Records naming one file share one fingerprint."""
    paths = list(dict.fromkeys(record.path for _, record in entries))
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        prints = list(pool.map(_fingerprint, paths))
    path_index = {p: k for k, p in enumerate(paths)}
    unreadable = [f"{record.where}: image_url: {record.image_url}: {prints[path_index[record.path]]}"
                  for _, record in entries if isinstance(prints[path_index[record.path]], str)]
    good = [i for i, p in enumerate(prints) if not isinstance(p, str)]
    hashes = np.array([prints[i][1] for i in good], dtype=np.uint64)
    sha = [prints[i][0] for i in good]
    members: dict[int, list] = {}
    node_of = {i: n for n, i in enumerate(good)}
    for split, record in entries:
        node = node_of.get(path_index[record.path])
        if node is not None:
            members.setdefault(node, []).append((split, record))
    parent = list(range(len(good)))
    for i, j in near_pairs(hashes, max_distance):
        parent[_root(parent, i)] = _root(parent, j)
    components: dict[int, list[int]] = {}
    for node in range(len(good)):
        components.setdefault(_root(parent, node), []).append(node)
    groups, leaks = [], []
    for nodes in components.values():
        found = [(node, split, record) for node in nodes for split, record in members.get(node, [])]
        if len(found) < 2:
            continue
        groups.append(_group(found, hashes, sha))
        leaks += _leaks(found, hashes, sha)
    groups.sort(key=lambda g: (-len(g["images"]), g["images"][0]["where"]))
    leaks.sort(key=lambda leak: (leak["distance"], leak["training"]["where"]))
    return groups, leaks, unreadable


def _fingerprint(path: str):
    """(sha256 of the file, 64-bit perceptual hash), or the reason it cannot be read."""
    import imagehash

    from .thumbnails import reduced_rgb

    try:
        data = local_path(path).read_bytes()
        bits = imagehash.phash(reduced_rgb(data, HASH_DECODE_SIZE)).hash.reshape(-1)
    except (OSError, ValueError) as exc:
        return str(exc)
    return hashlib.sha256(data).hexdigest(), int(np.packbits(bits).view(">u8")[0])


def near_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of 64-bit hashes differing in at most ``max_distance``
    bits. Beyond a few thousand hashes, by the pigeonhole principle: split into
    ``max_distance + 1`` blocks of bits, two hashes that close agree on at least one block, so
    only hashes sharing a block value are compared."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        return []
    if n < BRUTE_FORCE_BELOW or max_distance >= 16:
        out = []
        for i in range(n - 1):
            close = np.flatnonzero(popcount(hashes[i + 1:] ^ hashes[i]) <= max_distance) + i + 1
            out += [(i, int(j)) for j in close]
        return out
    blocks = max_distance + 1
    edges = np.linspace(0, 64, blocks + 1).astype(int)
    candidates = set()
    for low, high in zip(edges[:-1], edges[1:]):
        keys = (hashes >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(keys[order], prepend=keys[order][0] + np.uint64(1)))
        for a, b in zip(starts, [*starts[1:], n]):
            bucket = sorted(order[a:b].tolist())
            candidates.update((bucket[x], bucket[y]) for x in range(len(bucket)) for y in range(x + 1, len(bucket)))
    if not candidates:
        return []
    pairs = np.array(sorted(candidates), dtype=np.int64)
    keep = popcount(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]) <= max_distance
    return [(int(i), int(j)) for i, j in pairs[keep]]


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy 2's ``bitwise_count``, or a byte table before it)."""
    values = np.asarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    table = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)
    return table[values.reshape(-1, 1).view(np.uint8)].sum(axis=1).reshape(values.shape)


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _member(split, record) -> dict:
    return {"split": split, "where": record.where, "image_url": record.image_url, "path": record.path}


def _distance(hashes, a: int, b: int) -> int:
    return int(popcount(hashes[a] ^ hashes[b]))


def _group(found, hashes, sha) -> dict:
    nodes = sorted({node for node, _, _ in found})
    distance = max((_distance(hashes, a, b) for a in nodes for b in nodes if a < b), default=0)
    return {"images": [_member(split, record) for _, split, record in sorted(found, key=lambda f: f[2].where)],
            "max_distance": distance, "identical": len({sha[n] for n in nodes}) == 1,
            "splits": sorted({split for _, split, _ in found}, key=SPLITS.index)}


def _leaks(found, hashes, sha) -> list[dict]:
    out = []
    for node_t, split_t, rec_t in found:
        for node_v, split_v, rec_v in found:
            if split_t == "training" and split_v == "validation":
                out.append({"training": _member(split_t, rec_t), "validation": _member(split_v, rec_v),
                            "distance": _distance(hashes, node_t, node_v), "same_file": node_t == node_v,
                            "identical": sha[node_t] == sha[node_v]})
    return out


# ----------------------------------------------------------------------------- statistics

def _balance(task, split) -> dict:
    counts = task.class_counts(split.records)
    ordered = {name: int(counts.get(name, 0)) for name in split.labels}
    present = [c for c in ordered.values() if c]
    return {"unit": task.summary_key(), "counts": ordered,
            "imbalance_ratio": round(max(present) / min(present), 3) if present else None}


def _image_sizes(records) -> dict:
    sizes = Counter((r.width, r.height) for r in records if r.width and r.height)
    return {"distinct": len(sizes),
            "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in sizes.most_common(50)]}


def _box_stats(records) -> dict:
    """Sizes (square root of the area) and aspect ratios of the objects, in pixels of the image
    (the normalised coordinates times the image's size from its header)."""
    widths, heights = [], []
    for record in records:
        if not (record.width and record.height):
            continue
        for obj in record.objects:
            x0, y0, x1, y1 = obj.box
            widths.append((x1 - x0) * record.width)
            heights.append((y1 - y0) * record.height)
    w, h = np.asarray(widths, dtype=np.float64), np.asarray(heights, dtype=np.float64)
    size = np.sqrt(w * h)
    ok = (w > 0) & (h > 0)
    ratio = np.log2(w[ok] / h[ok])
    size_counts, _ = np.histogram(size, SIZE_BINS)
    aspect_counts, _ = np.histogram(np.clip(ratio, ASPECT_BINS[0], ASPECT_BINS[-1]), ASPECT_BINS)
    return {
        "objects": int(len(size)),
        "size_bins": [float(b) if math.isfinite(b) and b < 1e9 else None for b in SIZE_BINS],
        "size_counts": size_counts.tolist(),
        "coco_area": {"small": int((size < 32).sum()), "medium": int(((size >= 32) & (size < 96)).sum()),
                      "large": int((size >= 96).sum())},
        "aspect_log2_bins": ASPECT_BINS.round(3).tolist(),
        "aspect_counts": aspect_counts.tolist(),
        "median_size": float(np.median(size)) if len(size) else None,
        "median_aspect": float(2 ** np.median(ratio)) if len(ratio) else None,
    }


def summary(report: dict) -> str:
    """The audit in a few lines, for the terminal."""
    lines = [f"task: {report['task']}",
             "images: " + ", ".join(f"{n} {split}" for split, n in report["images"].items())]
    invalid = {k: v for k, v in report["invalid_lines"].items() if v}
    if invalid:
        lines.append("invalid lines (left out; `visionml validate` lists them): "
                     + ", ".join(f"{n} in {split}" for split, n in invalid.items()))
    groups = report["near_duplicates"]
    lines.append(f"near-duplicate groups (perceptual hash within {report['max_distance']} bits): "
                 f"{report['near_duplicate_groups']}")
    for group in groups[:10]:
        kind = "identical files" if group["identical"] else f"up to {group['max_distance']} bits apart"
        lines.append(f"  {kind}: " + ", ".join(f"{m['where']} ({m['image_url']})" for m in group["images"]))
    if report["train_validation_leaks"] is not None:
        lines.append(f"the same image in training and validation: {report['train_validation_leak_count']}")
        for leak in report["train_validation_leaks"][:10]:
            how = "the same file" if leak["same_file"] else "identical bytes" if leak["identical"] else \
                f"{leak['distance']} bits apart"
            lines.append(f"  {leak['training']['where']} = {leak['validation']['where']} ({how})")
    for split, balance in report["class_balance"].items():
        counts = ", ".join(f"{name} {n}" for name, n in balance["counts"].items())
        ratio = balance["imbalance_ratio"]
        lines.append(f"{balance['unit']} per class ({split}): {counts}"
                     + (f"; largest/smallest {ratio:g}" if ratio else ""))
    for split, stats in report.get("boxes", {}).items():
        if stats["objects"]:
            area = stats["coco_area"]
            lines.append(f"box sizes ({split}): median {stats['median_size']:.0f} px, {area['small']} small (<32), "
                         f"{area['medium']} medium, {area['large']} large (>=96); median aspect "
                         f"{stats['median_aspect']:.2f} (width/height)")
    for split, sizes in report["image_sizes"].items():
        top = ", ".join(f"{s['width']}x{s['height']} ({s['images']})" for s in sizes["sizes"][:5])
        lines.append(f"image sizes ({split}): {sizes['distinct']} distinct; most common {top}")
    if report["unreadable"]:
        lines.append(f"images that could not be hashed: {len(report['unreadable'])}")
        lines += [f"  {line}" for line in report["unreadable"][:5]]
    return "\n".join(lines)
