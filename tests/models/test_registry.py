"""The registry: names, errors, heads sized to the labels, detector settings, layer freezing."""

import pytest
import torch

from visionml.errors import UsageError
from visionml.models import MODELS, build_model, freeze_groups, freeze_layers, get_spec, models_for
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, get_task

AZURE_NAMES = {
    MULTICLASS: ["mobilenetv2", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vitb16r224",
                 "vits16r224", "vitl16r224", "seresnext", "resnest50", "resnest101"],
    DETECTION: [f"fasterrcnn_resnet{d}_fpn" for d in (18, 34, 50, 101, 152)] + ["retinanet_resnet50_fpn"],
    SEGMENTATION: [f"maskrcnn_resnet{d}_fpn" for d in (18, 34, 50, 101, 152)],
}


@pytest.mark.parametrize("task", list(AZURE_NAMES))
def test_every_azure_name_is_registered_for_its_task(task):
    assert set(AZURE_NAMES[task]) <= set(models_for(task))
    task = get_task(task)
    assert task.default_model in models_for(task) and task.cpu_preset["model_name"] in models_for(task)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UsageError, match="resnet50"):
        get_spec("resnet05")


def test_yolov5_fails_naming_the_closest_supported_detector():
    with pytest.raises(UsageError, match="AGPL.*fasterrcnn_mobilenet_v3_large_fpn"):
        get_spec("yolov5", DETECTION)


def test_name_for_another_task_lists_the_tasks_models():
    with pytest.raises(UsageError, match="Models for image_instance_segmentation: maskrcnn_resnet18_fpn"):
        get_spec("fasterrcnn_resnet50_fpn", SEGMENTATION)


def test_spec_metadata():
    assert get_spec("resnet18").gradcam_layer == "layer4"
    assert get_spec("vitb16r224").gradcam_layer is None and get_spec("vitb16r224").same_crop_sizes
    assert 11e6 < get_spec("resnet18").parameters < 12e6
    assert get_spec("ssdlite320_mobilenet_v3_large").parameters < get_spec("fasterrcnn_resnet50_fpn").parameters


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "mobilenet_v3_small", "efficientnet_b0", "seresnext"])
def test_classifier_head_and_gradcam_layer(name):
    model = build_model(name, MULTILABEL, 3, pretrained=False, hp={}).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    layer = get_spec(name).gradcam_layer
    assert isinstance(model.get_submodule(layer), torch.nn.Module)


def test_vit_builds_at_its_fixed_size():
    with torch.device("meta"):  # shapes only: no memory, no time spent initialising 86M weights
        model = build_model("vitb16r224", MULTICLASS, 5, pretrained=False, hp={}).eval()
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 5)


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_fpn", "ssdlite320_mobilenet_v3_large"])
def test_detector_trains_and_predicts_with_background_added(name):
    hp = {"min_size": 96, "max_size": 128, "box_score_threshold": 0.0, "box_detections_per_image": 7}
    model = build_model(name, DETECTION, 4, pretrained=False, hp=hp)
    images = [torch.rand(3, 96, 120), torch.rand(3, 100, 90)]
    box = {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([4])}
    target = [box, box]
    losses = model(images, target)  # label 4 = the 4th class, valid only with the background slot
    assert all(torch.isfinite(v) for v in losses.values())
    out = model.eval()(images)[0]
    assert len(out["boxes"]) <= 7 and all(1 <= int(label) <= 4 for label in out["labels"])


def test_detector_settings_reach_torchvision():
    hp = {"min_size": 240, "max_size": 320, "box_score_threshold": 0.3, "nms_iou_threshold": 0.4,
          "box_detections_per_image": 50, "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_test": 150,
          "box_batch_size_per_image": 128, "anchor_sizes": (16, 32, 64, 128)}
    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, 2, pretrained=False, hp=hp)
    assert model.transform.min_size == (240,) and model.transform.max_size == 320
    assert model.roi_heads.score_thresh == 0.3 and model.roi_heads.nms_thresh == 0.4
    assert model.roi_heads.detections_per_img == 50
    assert model.rpn._pre_nms_top_n["training"] == 600 and model.rpn._post_nms_top_n["testing"] == 150
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    assert model.rpn.anchor_generator.sizes == ((16, 32, 64, 128),) * 3
    # 4 sizes x 3 ratios = 12 anchors per location: the RPN head was rebuilt to match.
    assert model.rpn.head.cls_logits.out_channels == 12


def test_retinanet_head_sized_with_background():
    with torch.device("meta"):
        model = build_model("retinanet_resnet50_fpn", DETECTION, 4, pretrained=False,
                            hp={"anchor_sizes": (16, 32, 64, 128, 256)})
    assert model.head.classification_head.num_classes == 5
    assert model.anchor_generator.sizes[0] == (16, 20, 25)


def test_resnet_fpn_anchor_sizes_need_one_per_level():
    with pytest.raises(UsageError, match="needs 5 values"):
        build_model("maskrcnn_resnet18_fpn", SEGMENTATION, 2, pretrained=False, hp={"anchor_sizes": (16, 32)})


def test_from_scratch_detectors_normalise_and_pretrained_layout_freezes():
    scratch = build_model("fasterrcnn_resnet18_fpn", DETECTION, 2, pretrained=False, hp={})
    layout = build_model("fasterrcnn_resnet18_fpn", DETECTION, 2, pretrained=True, hp={}, fetch_weights=False)
    assert isinstance(scratch.backbone.body.bn1, torch.nn.BatchNorm2d)
    assert type(layout.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    assert all(p.requires_grad for p in scratch.backbone.body.parameters())


def test_freeze_layers_counts_azure_groups():
    model = build_model("resnet18", MULTICLASS, 2, pretrained=False, hp={})
    assert [g[0] for g in freeze_groups(model)] == ["conv1.", "layer1.", "layer2.", "layer3.", "layer4."]
    freeze_layers(model, "resnet18", 2)
    assert not model.conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    assert model.layer2[0].conv1.weight.requires_grad and model.fc.weight.requires_grad
    with pytest.raises(UsageError, match="from 0 to 5"):
        freeze_layers(model, "resnet18", 6)


def test_freeze_layers_in_a_detector_backbone():
    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, 2, pretrained=False, hp={})
    groups = freeze_groups(model)
    assert groups[0] == ("backbone.body.0.",)
    freeze_layers(model, "fasterrcnn_mobilenet_v3_large_fpn", 3)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.body.2."))
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.fpn."))


def test_registry_is_a_plain_dict_keyed_by_user_names():
    assert MODELS["resnet50"].name == "resnet50"
    assert all(name == name.lower() for name in MODELS)
