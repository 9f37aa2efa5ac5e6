"""Every hyperparameter an Azure AutoML image job accepts, one typed ``Param`` each, with Azure's names and
defaults; the keys Azure accepts that visionml notes (``NOTED_KEYS``) or refuses (``REFUSED_KEYS``).

Reference: Azure Machine Learning, "Hyperparameters for computer vision tasks in automated
machine learning" (https://learn.microsoft.com/azure/machine-learning/reference-automl-images-hyperparameters).
Keys marked ``azure=False`` are visionml extensions (precision, proposal budgets, anchors)
that the ``cpu`` preset needs; Azure jobs never set them, so their defaults change nothing.
"""

from __future__ import annotations

from .fields import ALL, CLS, DET, SEG, Param

PARAMS: dict[str, Param] = {p.name: p for p in [
    # --- model agnostic (Azure) ---
    Param("model_name", "model", None, help="registry name (visionml models); default per task"),
    Param("number_of_epochs", "int", 15, low=1),
    Param("training_batch_size", "int", {"classification": 78, "detection": 2}, low=1),
    Param("validation_batch_size", "int", {"classification": 78, "detection": 1}, low=1, inference=True),
    Param("learning_rate", "float", {"classification": 0.01, "detection": 0.005}, low=0, high=1, low_open=True),
    Param("optimizer", "choice", "sgd", choices=("sgd", "adam", "adamw")),
    Param("momentum", "float", 0.9, low=0, high=1),
    Param("weight_decay", "float", 1e-4, low=0, high=1),
    Param("nesterov", "bool", True),
    Param("beta1", "float", 0.9, low=0, high=1),
    Param("beta2", "float", 0.999, low=0, high=1),
    Param("ams_gradient", "bool", False, aliases=("amsgrad",)),
    Param("learning_rate_scheduler", "choice", "warmup_cosine", choices=("warmup_cosine", "step"),
          aliases=("lr_scheduler",)),
    Param("warmup_cosine_lr_cycles", "float", 0.45, low=0, high=1),
    Param("warmup_cosine_lr_warmup_epochs", "int", 2, low=0),
    Param("step_lr_gamma", "float", 0.5, low=0, high=1),
    Param("step_lr_step_size", "int", 5, low=1),
    Param("early_stopping", "bool", True),
    Param("early_stopping_patience", "int", 5, low=1),
    Param("early_stopping_delay", "int", 5, low=0),
    Param("evaluation_frequency", "int", 1, low=1),
    Param("checkpoint_frequency", "int", 1, low=1, optional=True,
          help="keep checkpoints/epoch_NNN.pt (the full training state) every N epochs, as Azure keeps "
               "{epoch}_model.pt; none = only last.pt (resume) and the best epoch's model/"),
    Param("layers_to_freeze", "int", None, low=0, optional=True),
    Param("gradient_accumulation_step", "int", 1, low=1, aliases=("grad_accumulation_step",)),
    Param("number_of_workers", "int", None, low=0, optional=True, aliases=("num_workers",),
          help="data loader workers; none = min(8, CPU count) (Azure's default is 8)"),
    Param("validation_data_size", "float", 0.2, low=0, high=1, low_open=True, high_open=True,
          aliases=("split_ratio", "validation_size")),
    Param("ignore_data_errors", "bool", True,
          help="train on what Azure's reader keeps: an invalid box or polygon segment, or an image that is "
               "missing or does not decode, is left out and reported in RUN/data_report.json (Azure's "
               "default); false = any data problem stops the run before training (docs/data.md)"),
    Param("random_seed", "int", None, low=0, high=2**32 - 1, optional=True, aliases=("seed",),
          help="seeds weights, shuffling and the validation split; wins over --seed; none = --seed, else a "
               "fresh seed (saved in config.json)"),
    Param("log_training_metrics", "bool", False,
          help="also compute the primary metric on the training batches at each evaluation "
               "(history.csv: PRIMARY_train); costs one more forward pass per training batch"),
    Param("log_validation_loss", "bool", True,
          help="the validation loss at each evaluation (history.csv: validation_loss); detectors pay one "
               "more forward pass per validation batch"),
    Param("enable_onnx_normalization", "bool", False,
          help="Azure: the ONNX graph takes 0-255 pixels and normalises inside. Saved with the model; visionml "
               "export --format onnx follows it (or --set enable_onnx_normalization=...)"),
    Param("distributed", "bool", True,
          help="Azure: train on every GPU of the node. visionml trains distributed when started under "
               "torchrun; false refuses a torchrun launch of more than one process"),
    # --- classification (Azure) ---
    Param("weighted_loss", "choice", 0, groups=CLS, choices=(0, 1, 2),
          help="0 none, 1 sqrt(class weights), 2 class weights"),
    # Upper bounds on image sizes: far above any real setting, low enough that a typo (or an edited
    # manifest) fails here instead of allocating tens of gigabytes per image.
    Param("training_crop_size", "int", 224, groups=CLS, low=1, high=4096, aliases=("train_crop_size",)),
    Param("validation_crop_size", "int", 224, groups=CLS, low=1, high=4096, inference=True,
          aliases=("valid_crop_size",)),
    Param("validation_resize_size", "int", 256, groups=CLS, low=1, high=4096, inference=True,
          aliases=("valid_resize_size",)),
    # --- detection and segmentation (Azure) ---
    Param("min_size", "int", 600, groups=DET, low=1, high=8192, inference=True),
    Param("max_size", "int", 1333, groups=DET, low=1, high=8192, inference=True),
    Param("box_score_threshold", "float", 0.3, groups=DET, low=0, high=1, inference=True,
          aliases=("box_score_thresh",)),
    Param("nms_iou_threshold", "float", 0.5, groups=DET, low=0, high=1, inference=True,
          aliases=("nms_iou_thresh", "box_nms_thresh")),
    Param("box_detections_per_image", "int", 100, groups=DET, low=1, inference=True,
          aliases=("box_detections_per_img",)),
    Param("validation_metric_type", "choice", "voc", groups=DET, choices=("none", "coco", "voc", "coco_voc"),
          help="none: no validation metrics; every evaluation's model replaces the last (Azure's rule)"),
    Param("validation_iou_threshold", "float", 0.5, groups=DET, low=0.1, high=1, clamp=True),
    Param("tile_grid_size", "grid", None, groups=DET, optional=True, inference=True,
          help="tiling for small objects: train on the image and its tiles, predict on both (docs/models.md)"),
    Param("tile_overlap_ratio", "float", 0.25, groups=DET, low=0, high=1, high_open=True, inference=True),
    Param("tile_predictions_nms_threshold", "float", 0.25, groups=DET, low=0, high=1, inference=True,
          aliases=("tile_predictions_nms_thresh",)),
    # --- instance segmentation (Azure) ---
    Param("mask_pixel_score_threshold", "float", 0.5, groups=SEG, low=0, high=1, inference=True),
    Param("max_number_of_polygon_points", "int", 100, groups=SEG, low=3, inference=True),
    Param("export_as_image", "bool", False, groups=SEG, inference=True,
          help="visionml predict: also write each instance's mask as an image file, in masks/ beside --output "
               "(Azure's batch scoring setting)"),
    Param("image_type", "choice", "jpg", groups=SEG, choices=("jpg", "png", "bmp"), inference=True,
          help="the file format of export_as_image's masks"),
    # --- visionml extensions (not Azure): what the cpu preset tunes ---
    Param("precision", "choice", "auto", choices=("auto", "fp32", "bf16", "fp16"), azure=False,
          help="auto: fp16 mixed precision on CUDA, fp32 on CPU"),
    Param("rpn_pre_nms_top_n_train", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS in training; none = torchvision's 2000"),
    Param("rpn_post_nms_top_n_train", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS in training; none = torchvision's 2000"),
    Param("rpn_pre_nms_top_n_test", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS at inference; none = torchvision's 1000"),
    Param("rpn_post_nms_top_n_test", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS at inference; none = torchvision's 1000"),
    Param("box_batch_size_per_image", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN sampled RoIs per image for the box head loss; none = torchvision's 512"),
    Param("anchor_sizes", "ints", None, groups=DET, low=1, optional=True, azure=False,
          help="anchor sizes in pixels: 5 (one per FPN level) for ResNet FPN and RetinaNet, "
               "any number for MobileNet FPN; none = torchvision's 32..512"),
]}

ALIASES: dict[str, str] = {alias: p.name for p in PARAMS.values() for alias in p.aliases}
"""Azure's SDK v1 / internal spellings -> the canonical (CLI/SDK v2) name."""

_YOLO = ("applies to Azure's yolov5 only, which visionml does not have (its only maintained implementation "
         "is AGPL-licensed): ignored. The R-CNN and RetinaNet models size images with min_size and max_size.")
NOTED_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    # key: (groups it belongs to, why visionml accepts it and does nothing with it)
    "image_size": (DET, _YOLO),
    "img_size": (DET, _YOLO),
    "model_size": (DET, _YOLO),
    "multi_scale": (DET, _YOLO),
    "box_iou_thresh": (DET, _YOLO),
    "augmentations": (ALL, "is an Azure service string visionml does not read: training uses Azure's default "
                           "augmentations (docs/models.md, 'Augmentation')."),
    "advanced_settings": (ALL, "carries Azure service settings (streaming images, yolov5's mosaic) that mean "
                               "nothing on one machine: ignored."),
}
"""Keys an Azure job accepts that only Azure's yolov5 or Azure's service reads: accepted, not stored, and
explained in a note."""

_CHECKPOINT = ("names a checkpoint in an Azure workspace, which visionml can neither fetch nor read. To start "
               "from earlier weights, remove it and pass --checkpoint MODEL_DIR with a visionml model folder "
               "(an earlier run's RUN/model).")
REFUSED_KEYS: dict[str, str] = {
    "checkpoint_run_id": _CHECKPOINT,
    "checkpoint_dataset_id": _CHECKPOINT,
    "checkpoint_filename": _CHECKPOINT,
    "checkpoint_model": _CHECKPOINT,
}
"""Keys an Azure job accepts whose meaning visionml cannot honour here: training without it would silently
differ from the Azure job, so they fail, saying what to do instead."""
