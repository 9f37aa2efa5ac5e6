"""Pretrained weights come from torch's hub cache; missing files fail fast with where to put them."""

import pytest
import torch

from visionml.errors import VisionMLError
from visionml.models import build_model
from visionml.models.weights import weights_location
from visionml.tasks import DETECTION, MULTICLASS


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty private hub cache (TORCH_HOME) with downloads forbidden."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONML_OFFLINE", "1")
    return tmp_path / "hub" / "checkpoints"


def test_cached_torchvision_file_is_loaded(hub):
    url, path = weights_location("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert path.parent == hub and path.name == "resnet18-f37072fd.pth" and url.endswith(path.name)
    # A "published" file: the state dict of a randomly initialised resnet18, under the exact name.
    import torchvision

    published = torchvision.models.resnet18(weights=None).state_dict()
    hub.mkdir(parents=True)
    torch.save(published, path)
    model = build_model("resnet18", MULTICLASS, 3, pretrained=True, hp={})
    assert torch.equal(model.layer3[1].conv2.weight, published["layer3.1.conv2.weight"])
    assert model.fc.out_features == 3  # ImageNet's 1000-class head replaced for the labels


def test_imagenet_backbone_of_a_detector_is_loaded(hub):
    import torchvision

    _, path = weights_location("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    published = torchvision.models.resnet18(weights=None).state_dict()
    hub.mkdir(parents=True)
    torch.save(published, path)
    model = build_model("fasterrcnn_resnet18_fpn", DETECTION, 2, pretrained=True, hp={})
    assert torch.equal(model.backbone.body.layer2[0].conv1.weight, published["layer2.0.conv1.weight"])
    assert torch.equal(model.backbone.body.bn1.running_var, published["bn1.running_var"])


def test_missing_file_offline_names_file_folder_url_and_the_way_out(hub):
    with pytest.raises(VisionMLError) as info:
        build_model("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, 2, pretrained=True, hp={})
    message = str(info.value)
    assert "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in message
    assert str(hub) in message and "https://download.pytorch.org/models/" in message
    assert "--no-pretrained" in message and "offline" in message


def test_failed_download_fails_fast(hub, monkeypatch):
    monkeypatch.delenv("VISIONML_OFFLINE")
    import torch.hub

    def no_network(url, dst, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(VisionMLError, match="download failed.*network unreachable.*resnet18-f37072fd.pth"):
        build_model("resnet18", MULTICLASS, 2, pretrained=True, hp={})


def test_timm_weights_use_the_same_cache_folder(hub):
    url, path = weights_location("timm:seresnext50_32x4d.racm_in1k")
    assert path.parent == hub and path.name == "seresnext50_32x4d.racm_in1k.safetensors"
    assert url.startswith("https://huggingface.co/timm/seresnext50_32x4d.racm_in1k/")


def test_cached_timm_file_is_loaded_and_reheaded(hub):
    import timm
    from safetensors.torch import save_file

    _, path = weights_location("timm:vit_small_patch16_224.augreg_in21k_ft_in1k")
    published = timm.create_model("vit_small_patch16_224", pretrained=False).state_dict()
    hub.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in published.items()}, str(path))
    model = build_model("vits16r224", MULTICLASS, 4, pretrained=True, hp={})
    assert torch.equal(model.blocks[5].attn.qkv.weight, published["blocks.5.attn.qkv.weight"])
    assert model.head.out_features == 4
