"""Per image: what the model got right and wrong, with the evaluator's matching; the confusion
matrix with the images behind each cell; and the images whose label is most likely wrong.

Detection and segmentation take the matches from the same COCO evaluator runs as
``metrics.detection`` (faster-coco-eval at ``validation_iou_threshold``, over the deployed boxes,
a prediction on a crowd region ignored), so the true positives, false positives and misses here
add up to the numbers ``visionml evaluate`` reports, and the confusion matrix is Azure's
(class-agnostic matching; rows the labelled class, columns the predicted one and ``Missed``),
plus a row for predictions that overlap no labelled object.

Likely label mistakes, each with a suspicion in [0, 1] (images are ranked by their highest):
a confident prediction of another class than the label (the prediction's score); a box the model
finds confidently where nothing is labelled (its score); a labelled box no prediction matches
(half of one minus its best IoU with any predicted box, so these rank below confident findings);
for multi-label, a class predicted but not labelled (its probability) or labelled but scored low
(one minus its probability).
"""

from __future__ import annotations

import numpy as np

MISSED = "Missed"
NO_OBJECT = "(no labelled object)"


def match(task, scored) -> dict:
    """``{"images": {record index: {...}}, "confusion": {...}, "suspects": [...]}`` for the records
    ``scored`` has predictions for."""
    order = sorted(scored.predictions)
    if task.objects:
        return _objects(task, scored, order)
    if task.multilabel:
        return _multilabel(scored, order)
    return _multiclass(scored, order)


# ----------------------------------------------------------------------------- classification

def _multiclass(scored, order) -> dict:
    labels = scored.labels
    n = len(labels)
    cells = [[[] for _ in range(n)] for _ in range(n)]
    images, suspects = {}, []
    for i in order:
        truth, probs = int(scored.ground_truth[i]), np.asarray(scored.predictions[i], dtype=np.float64)
        guess = int(np.argmax(probs))
        cells[truth][guess].append(i)
        top = np.argsort(-probs, kind="stable")[:5]
        images[i] = {"prediction": {"label": labels[guess], "score": float(probs[guess]),
                                    "top": [[labels[k], float(probs[k])] for k in top]},
                     "outcome": {"correct": guess == truth}}
        if guess != truth:
            suspects.append({"id": i, "score": float(probs[guess]), "reasons": [
                f"the model says {labels[guess]} ({probs[guess]:.2f}); the label says {labels[truth]} "
                f"({probs[truth]:.2f})"]})
    confusion = {"rows": list(labels), "columns": list(labels), "row_title": "label", "column_title": "predicted",
                 "counts": [[len(c) for c in row] for row in cells], "unit": "images", "images": cells}
    return {"images": images, "confusion": confusion, "suspects": _ranked(suspects)}


def _multilabel(scored, order, threshold: float = 0.5) -> dict:
    labels = scored.labels
    columns = ["true positive", "false positive", "false negative"]
    cells = [[[] for _ in columns] for _ in labels]
    images, suspects = {}, []
    for i in order:
        truth = np.asarray(scored.ground_truth[i]).astype(bool)
        probs = np.asarray(scored.predictions[i], dtype=np.float64)
        said = probs >= threshold
        reasons = []
        for k, name in enumerate(labels):
            if truth[k] and said[k]:
                cells[k][0].append(i)
            elif said[k]:
                cells[k][1].append(i)
                reasons.append((float(probs[k]), f"the model says {name} ({probs[k]:.2f}); it is not labelled"))
            elif truth[k]:
                cells[k][2].append(i)
                reasons.append((1.0 - float(probs[k]), f"labelled {name}; the model gives it {probs[k]:.2f}"))
        top = np.argsort(-probs, kind="stable")[:5]
        images[i] = {"prediction": {"labels": [labels[k] for k in np.flatnonzero(said)],
                                    "top": [[labels[k], float(probs[k])] for k in top]},
                     "outcome": {"correct": bool((said == truth).all()),
                                 "fp": int((said & ~truth).sum()), "missed": int((truth & ~said).sum())}}
        if reasons:
            suspects.append(_suspect(i, reasons))
    confusion = {"rows": list(labels), "columns": columns, "row_title": "class", "column_title": "outcome at 0.5",
                 "counts": [[len(c) for c in row] for row in cells], "unit": "images", "images": cells}
    return {"images": images, "confusion": confusion, "suspects": _ranked(suspects)}


# ----------------------------------------------------------------------------- detection, segmentation

def evaluator_matches(task, ground_truth, predictions, labels, iou_threshold: float, score_threshold):
    """The evaluator's matching of ``predictions`` to ``ground_truth`` (lists in the metrics' form):
    ``(deployed, gt, dt, outcome, pairs, agnostic)`` with ``deployed`` the predictions scoring at
    least ``score_threshold`` (all when None), ``gt``/``dt`` their flat arrays (``labels``,
    ``iscrowd``, ``scores``, ``image``, in annotation order), ``outcome`` per deployed prediction
    (``metrics.voc`` TRUE_POSITIVE, FALSE_POSITIVE or IGNORED), ``pairs`` the class-aware matches
    and ``agnostic`` the class-agnostic ones, as ``[prediction, object]`` index rows."""
    from ..metrics.coco import detections_coco, flat_ground_truth, flat_predictions, ground_truth_coco
    from ..metrics.detection import MAX_DETS, _above, _outcomes, _pairs, _run_cocoeval

    deployed = _above(predictions, score_threshold)
    gt, dt = flat_ground_truth(ground_truth), flat_predictions(deployed)
    if not len(ground_truth):
        empty = np.zeros((0, 2), dtype=np.int64)
        return deployed, gt, dt, np.zeros(0, dtype=np.int64), empty, empty
    coco_gt = ground_truth_coco(ground_truth, labels, task.iou_type)
    coco_dt = detections_coco(coco_gt, deployed, len(labels), task.iou_type)
    cap = max(MAX_DETS, int(np.bincount(dt["image"]).max(initial=0)))
    matched = _run_cocoeval(coco_gt, coco_dt, task.iou_type, iou_threshold=iou_threshold, max_dets=cap).eval["matched"]
    agnostic = _run_cocoeval(coco_gt, coco_dt, task.iou_type, iou_threshold=iou_threshold, max_dets=cap,
                             use_categories=False).eval["matched"]
    return deployed, gt, dt, _outcomes(matched, gt["iscrowd"], len(dt["labels"])), _pairs(matched), _pairs(agnostic)


def _objects(task, scored, order) -> dict:
    from ..metrics import voc

    labels = scored.labels
    gt_list = [scored.ground_truth[i] for i in order]
    pred_list = [scored.predictions[i] for i in order]
    deployed, gt, dt, outcome, pairs, agnostic = evaluator_matches(
        task, gt_list, pred_list, labels, float(scored.settings["validation_iou_threshold"]), scored.score_threshold)
    crowd = gt["iscrowd"].astype(bool)
    found = np.zeros(len(crowd), dtype=bool)
    found[pairs[:, 1]] = True
    # Azure's confusion matrix: class-agnostic pairs with an object (a crowd region is none)
    agnostic = agnostic[~crowd[agnostic[:, 1]]] if len(agnostic) else agnostic
    partner_of_gt = np.full(len(crowd), -1, dtype=np.int64)
    partner_of_dt = np.full(len(dt["labels"]), -1, dtype=np.int64)
    partner_of_gt[agnostic[:, 1]] = agnostic[:, 0]
    partner_of_dt[agnostic[:, 0]] = agnostic[:, 1]
    on_crowd = outcome == voc.IGNORED

    n = len(labels)
    cells = [[[] for _ in range(n + 1)] for _ in range(n + 1)]
    counts = np.zeros((n + 1, n + 1), dtype=np.int64)  # objects (and unmatched predictions), as Azure counts
    gt_offsets = _offsets(gt_list)
    dt_offsets = _offsets(deployed)
    images, suspects = {}, []
    outcome_names = {voc.TRUE_POSITIVE: "tp", voc.FALSE_POSITIVE: "fp", voc.IGNORED: "ignored"}
    for k, i in enumerate(order):
        g0, g1 = gt_offsets[k], gt_offsets[k + 1]
        d0, d1 = dt_offsets[k], dt_offsets[k + 1]
        row_cells = set()
        reasons = []
        for j in range(g0, g1):
            if crowd[j]:
                continue
            partner = partner_of_gt[j]
            truth = int(gt["labels"][j])
            cell = (truth, n) if partner < 0 else (truth, int(dt["labels"][partner]))
            counts[cell] += 1
            row_cells.add(cell)
            if partner < 0:
                best = _best_iou(gt_list[k]["boxes"][j - g0], deployed[k]["boxes"])
                reasons.append((0.5 * (1.0 - best), f"a labelled {labels[truth]} box that no prediction matches"
                                + (f" (best overlap IoU {best:.2f})" if best > 0 else "")))
            else:
                guess = int(dt["labels"][partner])
                if guess != truth:
                    score = float(dt["scores"][partner])
                    reasons.append((score, f"the model sees a {labels[guess]} ({score:.2f}) where the label says "
                                           f"{labels[truth]}"))
        for d in range(d0, d1):
            if partner_of_dt[d] < 0 and not on_crowd[d]:
                guess, score = int(dt["labels"][d]), float(dt["scores"][d])
                row_cells.add((n, guess))
                counts[n, guess] += 1
                reasons.append((score, f"the model finds a {labels[guess]} ({score:.2f}) where nothing is labelled"))
        for r, c in row_cells:
            cells[r][c].append(i)
        outcomes = outcome[d0:d1]
        images[i] = {
            "predictions": _drawn(task, deployed[k], labels, gt_list[k], scored.settings,
                                  [outcome_names[int(o)] for o in outcomes]),
            "found": [bool(found[j]) or bool(crowd[j]) for j in range(g0, g1)],
            "outcome": {"tp": int((outcomes == voc.TRUE_POSITIVE).sum()),
                        "fp": int((outcomes == voc.FALSE_POSITIVE).sum()),
                        "missed": int((~found[g0:g1] & ~crowd[g0:g1]).sum())},
        }
        if reasons:
            suspects.append(_suspect(i, reasons))
    confusion = {"rows": [*labels, NO_OBJECT], "columns": [*labels, MISSED], "row_title": "label",
                 "column_title": "predicted", "counts": counts.tolist(), "unit": "objects", "images": cells}
    return {"images": images, "confusion": confusion, "suspects": _ranked(suspects)}


def _offsets(items) -> list[int]:
    return np.concatenate([[0], np.cumsum([len(np.asarray(x["labels"]).reshape(-1)) for x in items])]).astype(
        np.int64).tolist()


def _best_iou(box, boxes) -> float:
    import torch
    from torchvision.ops import box_iou

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return 0.0
    return float(box_iou(torch.as_tensor(np.asarray(box, dtype=np.float64).reshape(1, 4)),
                         torch.as_tensor(boxes)).max())


def _drawn(task, pred, labels, gt, settings, outcomes) -> list[dict]:
    """The deployed predictions of one image as the page draws them: normalised boxes (and
    polygons), label, score and outcome."""
    from ..geometry import xyxy_abs_to_norm

    width, height = gt["width"], gt["height"]
    boxes = np.clip(xyxy_abs_to_norm(np.asarray(pred["boxes"], dtype=np.float64).reshape(-1, 4), width, height), 0, 1)
    polygons = _polygons(pred.get("masks"), width, height, settings) if task.masks else None
    out = []
    for j, box in enumerate(boxes.round(5).tolist()):
        entry = {"label": labels[int(pred["labels"][j])], "score": round(float(pred["scores"][j]), 4), "box": box,
                 "outcome": outcomes[j]}
        if polygons is not None:
            entry["polygon"] = polygons[j]
        out.append(entry)
    return out


def _polygons(rles, width, height, settings) -> list:
    from pycocotools import mask as mask_utils

    from ..geometry import mask_to_polygons_abs, polygon_abs_to_norm

    points = int(settings["max_number_of_polygon_points"])
    out = []
    for rle in rles or []:
        mask = mask_utils.decode(rle).astype(bool)
        out.append([[round(v, 5) for v in seg] for seg in
                    polygon_abs_to_norm(mask_to_polygons_abs(mask, points), width, height)])
    return out


def _suspect(i: int, reasons: list[tuple[float, str]]) -> dict:
    """An image's issues, the likeliest first, repeats of one text counted instead of listed."""
    reasons = sorted(reasons, key=lambda r: -r[0])
    times: dict[str, int] = {}
    for _, text in reasons:
        times[text] = times.get(text, 0) + 1
    return {"id": i, "score": reasons[0][0],
            "reasons": [text if k == 1 else f"{text} (x{k})" for text, k in times.items()]}


def _ranked(suspects: list[dict]) -> list[dict]:
    suspects.sort(key=lambda s: (-s["score"], s["id"]))
    for s in suspects:
        s["score"] = round(float(s["score"]), 4)
    return suspects
