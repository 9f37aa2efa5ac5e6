"""Object detection and instance segmentation (torchvision's detector contract: images as a list
of [3, H, W] tensors in [0, 1], training returns a dict of losses, evaluation a list of
``{"boxes", "labels", "scores"[, "masks"]}`` with label 0 the background).

Instance segmentation is detection plus masks: targets gain rasterised polygons, outputs gain
thresholded masks and polygons, and the metrics evaluate masks instead of boxes.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from operator import attrgetter

import numpy as np

from .base import BOXES, EMPTY, POLYGONS, Task

_RCNN_CPU = {
    "optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 1e-4, "warmup_cosine_lr_warmup_epochs": 1,
    "warmup_cosine_lr_cycles": 0.5, "training_batch_size": 4, "validation_batch_size": 4,
    "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 150, "box_batch_size_per_image": 128, "precision": "bf16",
}


class DetectionTask(Task):
    name = "image_object_detection"
    aliases = ("image-object-detection", "object-detection")
    primary_metric = "mean_average_precision"
    label_shapes = frozenset({BOXES, EMPTY})
    inferred_from = BOXES
    param_groups = ("all", "detection")
    model_kind = "detector"
    default_model = "fasterrcnn_resnet50_fpn"
    cpu_preset = {**_RCNN_CPU, "model_name": "fasterrcnn_mobilenet_v3_large_fpn", "number_of_epochs": 8,
                  "min_size": 240, "max_size": 320, "anchor_sizes": (16, 32, 64, 128), "early_stopping_delay": 6}
    headline_metrics = ("mean_average_precision", "precision", "recall")
    automode = {
        "cpu": [{"model_name": "choice('fasterrcnn_mobilenet_v3_large_fpn')", "learning_rate": "uniform(0.0003, 0.003)"},
                {"model_name": "choice('fasterrcnn_resnet18_fpn')", "learning_rate": "uniform(0.0003, 0.003)"}],
        "gpu": [{"model_name": "choice('fasterrcnn_resnet50_fpn', 'retinanet_resnet50_fpn')",
                 "learning_rate": "uniform(0.0001, 0.01)", "optimizer": "choice('sgd', 'adamw')"}],
    }
    objects = True
    masks = False
    iou_type = "bbox"
    # Azure's training augmentation (object_detection/common/augmentations.py): half the time a crop
    # that keeps every box (at least 60% of the area) or a zoom out to 1-2x, even odds; then a flip.
    crop_or_expand_p = 0.5
    expand_range = (1.0, 2.0)
    crop_min_area = 0.6
    flip_p = 0.5
    # Azure's detection trainer stops once evaluations without improvement exceed the patience
    # (object_detection/trainer/train.py); its classification trainer stops when they reach it.
    stop_beyond_patience = True

    # ---- labels ---------------------------------------------------------------------------
    def class_names(self, record) -> list[str]:
        return [o.label for o in record.objects]

    def class_counts(self, records) -> Counter:
        # map/chain keep the walk over millions of objects in C.
        return Counter(map(attrgetter("label"), chain.from_iterable(map(attrgetter("objects"), records))))

    def summary_key(self) -> str:
        return "boxes"

    # ---- data -----------------------------------------------------------------------------
    def target(self, record, index, width, height, image_id):
        import torch
        from torchvision import tv_tensors

        from .. import geometry

        # Coordinates are fractions of the decoded image (after EXIF rotation), whatever
        # image_details claimed. Detectors number classes from 1: 0 is the background.
        boxes = geometry.xyxy_norm_to_abs([o.box for o in record.objects], width, height)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32),
                                              format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([index[o.label] + 1 for o in record.objects], dtype=torch.int64),
            "iscrowd": torch.tensor([int(o.is_crowd) for o in record.objects], dtype=torch.int64),
            "image_id": image_id,
        }
        if self.masks:
            target["masks"] = tv_tensors.Mask(_masks(record, width, height))
        return target

    def tiling(self, hp):
        from ..tiling import grid_from

        return grid_from(hp)

    def tile_record(self, record, tile, width: int, height: int):
        """``record`` (of an image decoded at ``width`` x ``height``) as the record of ``tile`` cut
        from it: objects cut to the tile and normalised to it, remnants below ``visionml.tiling``'s
        rule left out; ``target`` then makes the tile's target from it like any image's."""
        from dataclasses import replace

        from ..tiling import cut_objects

        x0, y0, x1, y1 = (int(v) for v in tile)
        return replace(record, objects=cut_objects(record.objects, tile, width, height),
                       width=x1 - x0, height=y1 - y0)

    def transforms(self, data_config, train: bool):
        from ..data.transforms import detection_eval, detection_train

        if not train:
            return detection_eval(data_config)
        return detection_train(data_config, self.crop_or_expand_p, self.flip_p, self.expand_range, self.crop_min_area)

    def apply_transform(self, transform, image, target):
        import torch

        image, target = transform(image, target)
        plain = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
        return image.as_subclass(torch.Tensor), plain

    def collate(self, batch):
        kept = [item for item in batch if item is not None]
        return [image for image, _ in kept], [target for _, target in kept]

    # ---- training -------------------------------------------------------------------------
    def losses(self, model, images, targets, criterion) -> dict:
        return {name: value.float() for name, value in model(images, targets).items()}

    def to_device(self, images, targets, device):
        import torch

        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
                   for t in targets]
        return images, targets

    def computes_metrics(self, hp) -> bool:
        return hp["validation_metric_type"] != "none"

    def validation_loss(self, model, images, targets, criterion) -> float:
        """The training losses on a validation batch: the model in training mode (losses need it),
        its normalisation and dropout layers kept in evaluation mode so nothing learns from it."""
        from torch import nn

        model.train()
        for module in model.modules():
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
                module.eval()
        try:
            return float(sum(value.float() for value in model(images, targets).values()))
        finally:
            model.eval()

    def eval_batch(self, model, images, targets, hp):
        import torch

        outputs = self.infer(model, images, hp)
        gts, preds = [], []
        for image, target, output in zip(images, targets, outputs):
            height, width = image.shape[-2:]
            # Detectors number classes from 1 (0 is background); metrics number them from 0.
            gt = {"height": int(height), "width": int(width),
                  "boxes": target["boxes"].float().cpu().numpy(),
                  "labels": (target["labels"] - 1).cpu().numpy(),
                  "iscrowd": target.get("iscrowd", torch.zeros_like(target["labels"])).cpu().numpy()}
            real = output["labels"] > 0  # label 0 is the background (RetinaNet scores it): never an answer
            pred = {"boxes": output["boxes"][real].float().cpu().numpy(),
                    "scores": output["scores"][real].float().cpu().numpy(),
                    "labels": (output["labels"][real] - 1).cpu().numpy()}
            if self.masks:
                from ..metrics.detection import masks_to_rles

                gt["masks"] = target["masks"].bool().cpu().numpy()
                binary = (output["masks"][real][:, 0].float() >= float(hp["mask_pixel_score_threshold"])).cpu().numpy()
                pred["masks"] = masks_to_rles(binary)
            gts.append(gt)
            preds.append(pred)
        return gts, preds

    def finish(self, gt_items, pred_items):
        return list(gt_items), list(pred_items)

    # ---- scoring --------------------------------------------------------------------------
    def preprocess(self, pil, data_config):
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(pil).float().div_(255)  # the detector normalises and resizes inside

    def batch(self, tensors):
        return list(tensors)

    def infer(self, run, tensors, settings):
        """With ``tile_grid_size``: each image whole and its tiles through ``run`` in batches, the
        detections merged in image pixels (``visionml.tiling.detect_tiled``); the one tiled path of
        validation, ``predict``, ``serve`` and ``evaluate``, for every backend."""
        grid = self.tiling(settings)
        if grid is None:
            return run(self.batch(tensors))
        from ..tiling import detect_tiled

        return detect_tiled(lambda inputs: run(self.batch(inputs)), list(tensors), grid,
                            float(settings["tile_predictions_nms_threshold"]),
                            limit=int(settings["box_detections_per_image"]))

    def postprocess(self, outputs, settings) -> list:
        return [_filter(output, settings, self.masks) for output in outputs]

    def wire(self, raw, width, height, filename, labels, settings, explanation=None) -> dict:
        from ..geometry import mask_to_polygons_abs, polygon_abs_to_norm, xyxy_abs_to_norm

        norm = np.clip(xyxy_abs_to_norm(raw["boxes"], width, height), 0.0, 1.0)
        boxes = []
        for i, (x0, y0, x1, y1) in enumerate(norm.tolist()):
            entry = {"box": {"topX": x0, "topY": y0, "bottomX": x1, "bottomY": y1},
                     "label": labels[int(raw["labels"][i])], "score": float(raw["scores"][i])}
            if self.masks:
                segments = mask_to_polygons_abs(raw["masks"][i], int(settings["max_number_of_polygon_points"]))
                entry["polygon"] = polygon_abs_to_norm(segments, width, height)
            boxes.append(entry)
        return {"filename": filename, "boxes": boxes}

    # ---- metrics --------------------------------------------------------------------------
    def ground_truth(self, record, width, height, index):
        from ..geometry import polygon_norm_to_abs, xyxy_norm_to_abs

        objects = record.objects
        gt = {"height": height, "width": width,
              "boxes": xyxy_norm_to_abs([o.box for o in objects], width, height),
              "labels": np.array([index[o.label] for o in objects], dtype=np.int64),
              "iscrowd": np.array([int(o.is_crowd) for o in objects], dtype=np.int64)}
        if self.masks:
            # COCO's own polygon form: the evaluator rasterises it exactly as it does for COCO data
            gt["polygons"] = [[seg.reshape(-1).tolist() for seg in polygon_norm_to_abs(o.polygon or [], width, height)]
                              for o in objects]
        return gt

    def metric_prediction(self, raw):
        pred = {"boxes": np.asarray(raw["boxes"], dtype=np.float64).reshape(-1, 4),
                "scores": np.asarray(raw["scores"], dtype=np.float64).reshape(-1),
                "labels": np.asarray(raw["labels"], dtype=np.int64).reshape(-1)}
        if self.masks:
            from ..metrics.detection import masks_to_rles

            pred["masks"] = masks_to_rles(raw.get("masks"), len(pred["boxes"]))
        return pred

    def metrics(self, ground_truth, predictions, labels, hp) -> dict:
        from ..metrics.detection import detection_metrics

        metric_type = hp["validation_metric_type"]
        notes = []
        if metric_type == "none":
            # Azure then computes no validation metrics; visionml still reports them, the 'voc' way.
            metric_type = "voc"
            notes.append("validation_metric_type 'none': mean_average_precision computed the 'voc' way")
        # Azure's numbers count the boxes a deployment returns (box_score_threshold); the COCO summary
        # counts every prediction given (validation and evaluate give them down to AP_SCORE_FLOOR).
        metrics = detection_metrics(ground_truth, predictions, labels, iou_type=self.iou_type,
                                    metric_type=metric_type, iou_threshold=float(hp["validation_iou_threshold"]),
                                    score_threshold=float(hp["box_score_threshold"]))
        metrics["notes"] = notes + metrics["notes"]
        return metrics

    def plots(self, ground_truth, predictions, labels, metrics, out_dir) -> list:
        from ..metrics import plots

        return plots.save_detection_plots(out_dir, metrics, labels)


class SegmentationTask(DetectionTask):
    name = "image_instance_segmentation"
    aliases = ("image-instance-segmentation", "instance-segmentation")
    label_shapes = frozenset({POLYGONS, EMPTY})
    inferred_from = POLYGONS
    param_groups = ("all", "detection", "segmentation")
    model_kind = "segmenter"
    default_model = "maskrcnn_resnet50_fpn"
    cpu_preset = {**_RCNN_CPU, "model_name": "maskrcnn_resnet18_fpn", "number_of_epochs": 4, "min_size": 160,
                  "max_size": 224, "anchor_sizes": (16, 32, 64, 128, 256), "early_stopping_delay": 5}
    automode = {
        "cpu": [{"model_name": "choice('maskrcnn_resnet18_fpn')", "learning_rate": "uniform(0.0003, 0.003)"}],
        "gpu": [{"model_name": "choice('maskrcnn_resnet50_fpn')", "learning_rate": "uniform(0.0001, 0.01)",
                 "optimizer": "choice('sgd', 'adamw')"}],
    }
    masks = True
    iou_type = "segm"

    def summary_key(self) -> str:
        return "polygons"


def _masks(record, width: int, height: int):
    import torch

    from .. import geometry

    masks = np.zeros((len(record.objects), height, width), dtype=np.uint8)
    for i, obj in enumerate(record.objects):
        if obj.polygon:
            masks[i] = geometry.polygons_abs_to_mask(
                geometry.polygon_norm_to_abs(obj.polygon, width, height), height, width)
    return torch.from_numpy(masks)


def _filter(output: dict, settings, with_masks: bool) -> dict:
    """One image's detector output filtered as the settings say: score threshold, per-class NMS,
    at most ``box_detections_per_image``; labels made 0-based; masks thresholded to bool.
    Torch detectors already did this with the same settings, so here it only guarantees the
    contract for backends whose thresholds are baked in (ONNX)."""
    import torch
    from torchvision.ops import batched_nms

    boxes = torch.as_tensor(output["boxes"], dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(output["scores"], dtype=torch.float32).reshape(-1)
    labels = torch.as_tensor(output["labels"], dtype=torch.int64).reshape(-1)
    # Label 0 is the background: RetinaNet's head scores it like a class; it is never an answer.
    keep = torch.nonzero((scores >= settings["box_score_threshold"]) & (labels > 0)).flatten()
    keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], settings["nms_iou_threshold"])]
    keep = keep[: int(settings["box_detections_per_image"])]
    out = {"boxes": boxes[keep].numpy(), "scores": scores[keep].numpy(), "labels": (labels[keep] - 1).numpy()}
    if with_masks:
        masks = torch.as_tensor(output["masks"])[keep]
        out["masks"] = (masks.reshape(len(keep), *masks.shape[-2:]) > settings["mask_pixel_score_threshold"]).numpy()
    return out
