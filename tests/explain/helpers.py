"""A predictor-like object around a small network, the interface explain() relies on:
``task, labels, model, preprocess(pil) -> [3, crop, crop], settings, data_config, manifest``."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from visionml.data.dataconfig import DataConfig
from visionml.tasks import MULTILABEL, get_task

# Labels of the explain tests' model folders: one with a space, as file names are made from labels.
LABELS = ["can", "carton", "milk bottle", "water_bottle"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class TinyPredictor:
    def __init__(self, model, task, labels, crop, model_name="resnet18"):
        self.model = model.eval()
        self.task = get_task(task)
        self.labels = list(labels)
        self.crop = crop
        self.settings = {"model_name": model_name}
        self.data_config = DataConfig(mean=MEAN, std=STD, resize_size=crop, crop_size=crop)
        self.manifest = {"model_name": model_name,
                         "preprocessing": {"resize_size": crop, "crop_size": crop, "mean": list(MEAN), "std": list(STD)}}

    def preprocess(self, pil):
        pixels = np.asarray(pil.convert("RGB").resize((self.crop, self.crop), Image.Resampling.BILINEAR))
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
        return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

    def probs(self, pil) -> np.ndarray:
        with torch.no_grad():
            logits = self.model(self.preprocess(pil)[None])[0]
        activation = torch.sigmoid if self.task == MULTILABEL else lambda v: torch.softmax(v, 0)
        return activation(logits).numpy()


def random_resnet18(num_classes, seed=0):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)
