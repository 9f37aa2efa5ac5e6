"""A deployment's settings in Azure's v1 spellings (its settings.json says box_score_thresh) are
inference settings too: ``--set box_score_thresh=0.5`` on predict/serve means box_score_threshold."""

from visionml.config import resolve_hyperparameters
from visionml.modelio import make_manifest
from visionml.predict.settings import resolve_settings


def test_v1_spellings_of_inference_settings():
    hp = resolve_hyperparameters("image_object_detection", {"model_name": "fasterrcnn_mobilenet_v3_large_fpn"})
    manifest = make_manifest("image_object_detection", hp["model_name"], ["a"], hp)
    settings = resolve_settings(manifest, {"box_score_thresh": "0.5", "nms_iou_thresh": "0.4"})
    assert settings["box_score_threshold"] == 0.5 and settings["nms_iou_threshold"] == 0.4
