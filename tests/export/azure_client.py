"""The client code of Azure's doc "Make predictions with ONNX on computer vision models from
AutoML" (MicrosoftDocs azure-ai-docs, articles/machine-learning/how-to-inference-onnx-automl-image-models.md),
step by step as the doc walks a user through it for each task, written for these tests (none of
the doc's code is copied): load ``labels.json`` and ``model.onnx``, read the input shape from
``session.get_inputs()``, preprocess as the doc does, run with every output name, read the outputs
by position, name labels ``classes[label_id]``.

Each function returns what the doc's client ends with, in the shape of visionml's answers so the
tests can compare: classification ``(probabilities [images, classes], classes)``; detection and
segmentation one list of ``{"box": {topX, topY, bottomX, bottomY}, "label", "score"}`` per image
(boxes as fractions of the image, the doc's ``_get_box_dims``), segmentation with a boolean
``mask`` at the image's size as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
BOX_TOLERANCE = 1e-4  # of the image's width and height
SCORE_TOLERANCE = 1e-4
# Classification: the doc's client resizes with PIL, visionml with torchvision's tensor resize;
# after rounding to 0-255 a few pixels differ by one level, which moves a probability by ~1e-4.
PROBABILITY_TOLERANCE = 1e-3


def open_model(folder):
    """Step "Load the labels and ONNX model files": the class names and an inference session."""
    import onnxruntime

    classes = json.loads((Path(folder) / "labels.json").read_text())
    session = onnxruntime.InferenceSession(str(Path(folder) / "model.onnx"), providers=["CPUExecutionProvider"])
    return classes, session


def run(session, img_data):
    """Step "Inference with ONNX Runtime": every output, by the names the session lists."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    output_names = [o.name for o in outputs]
    return output_names, session.run(output_names=output_names, input_feed={inputs[0].name: img_data})


def _to_chw(image: Image.Image, normalise: bool) -> np.ndarray:
    """HWC -> CHW floats; the doc's ``(pixel / 255 - mean) / std`` per channel (or, for a graph
    exported with enable_onnx_normalization, the pixels as they are), with a batch axis."""
    chw = np.asarray(image, dtype=np.float64).transpose(2, 0, 1)
    if normalise:
        chw = (chw / 255 - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return chw.astype(np.float32)[None]


def _batch(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


# -- classification --------------------------------------------------------------------------

def classify(folder, paths, resize_size: int, multilabel: bool, normalise: bool = True):
    """Multi-class / multi-label: the doc's preprocessing "With PyTorch" (resize the shorter side
    to ``valid_resize_size``, centre-crop the input's height, to tensor, ImageNet normalisation),
    then softmax (multi-class) or sigmoid (multi-label) over ``output1``'s logits."""
    from torchvision import transforms

    classes, session = open_model(folder)
    _, _, height_crop, width_crop = session.get_inputs()[0].shape
    steps = [transforms.Resize(resize_size), transforms.CenterCrop(height_crop), transforms.ToTensor()]
    if normalise:
        steps.append(transforms.Normalize(IMAGENET_MEAN.tolist(), IMAGENET_STD.tolist()))
    else:  # enable_onnx_normalization: the graph takes 0-255
        steps.append(transforms.Lambda(lambda x: x * 255))
    prepare = transforms.Compose(steps)
    img_data = _batch([prepare(Image.open(p).convert("RGB")).numpy()[None] for p in paths])
    _, outputs = run(session, img_data)
    logits = outputs[0].astype(np.float64)
    if multilabel:
        probabilities = 1 / (1 + np.exp(-logits))
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities, classes


# -- object detection (Faster R-CNN, RetinaNet) ------------------------------------------------

def _box_fractions(box, width, height) -> dict:
    x0, y0, x1, y1 = (float(v) for v in box)
    return {"topX": x0 / width, "topY": y0 / height, "bottomX": x1 / width, "bottomY": y1 / height}


def detect(folder, paths, score_threshold: float, normalise: bool = True) -> list[list[dict]]:
    """The doc's object detection client: ``batch, channel, height_onnx, width_onnx`` from the
    input's shape, each image resized to ``(width_onnx, height_onnx)`` and normalised, one run
    for the batch, then per image three outputs by position (``boxes, labels, scores``; the doc
    says to check the names for RetinaNet's ``boxes, scores, labels``), boxes divided by the
    input's size, ``classes[label]``, scores at or above the threshold."""
    classes, session = open_model(folder)
    _, _, height_onnx, width_onnx = session.get_inputs()[0].shape
    img_data = _batch([_to_chw(Image.open(p).convert("RGB").resize((width_onnx, height_onnx)), normalise)
                       for p in paths])
    output_names, predictions = run(session, img_data)
    answers = []
    for first in range(0, 3 * len(paths), 3):
        group = dict(zip((name.rsplit("_", 1)[0] if name[-1].isdigit() else name
                          for name in output_names[first:first + 3]), predictions[first:first + 3]))
        boxes, labels, scores = group["boxes"], group["labels"], group["scores"]
        answers.append([{"box": _box_fractions(box, width_onnx, height_onnx), "label": classes[int(label)],
                         "score": float(score)}
                        for box, label, score in zip(boxes, labels, scores) if score >= score_threshold])
    return answers


# -- instance segmentation (Mask R-CNN) ----------------------------------------------------------

def segment(folder, paths, resize_height: int, resize_width: int, score_threshold: float) -> list[list[dict]]:
    """The doc's instance segmentation client: each image resized to the size the user picked
    (``resize_height`` x ``resize_width``; the doc leaves it to the user, within min_size and
    max_size) and normalised, four outputs per image by position (boxes, labels, scores, masks);
    per box scoring above the threshold, the box scaled to the original image and the mask
    resized to it (nearest neighbour) and cut at 0.5."""
    classes, session = open_model(folder)
    images = [Image.open(p).convert("RGB") for p in paths]
    img_data = _batch([_to_chw(image.resize((resize_width, resize_height)), True) for image in images])
    _, predictions = run(session, img_data)
    answers = []
    for index, image in enumerate(images):
        boxes, labels, scores, masks = predictions[4 * index:4 * index + 4]
        width, height = image.size
        found = []
        for box, label, score, mask in zip(boxes, labels, scores, masks):
            if score <= score_threshold:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            scaled = [x0 * width / resize_width, y0 * height / resize_height,
                      x1 * width / resize_width, y1 * height / resize_height]
            full = Image.fromarray(mask[0].astype(np.float32), mode="F").resize((width, height), Image.NEAREST)
            found.append({"box": _box_fractions(scaled, width, height), "label": classes[int(label)],
                          "score": float(score), "mask": np.asarray(full) > 0.5})
        answers.append(found)
    return answers


# -- comparing with visionml ----------------------------------------------------------------------

def assert_client_probabilities(client: np.ndarray, rows: list[dict]) -> None:
    """The doc client's probabilities are visionml's ``probs`` (within PROBABILITY_TOLERANCE),
    with the same top class per image."""
    ours = np.array([r["probs"] for r in rows])
    assert client.shape == ours.shape
    np.testing.assert_allclose(client, ours, atol=PROBABILITY_TOLERANCE, rtol=0)
    assert (client.argmax(axis=1) == ours.argmax(axis=1)).all()


def _corners(box: dict) -> np.ndarray:
    return np.array([box[k] for k in ("topX", "topY", "bottomX", "bottomY")])


def assert_client_answers(client: list[dict], row: dict) -> None:
    """The doc client's boxes for one image are those of visionml's answer ``row``, one to one in
    order of score: the same labels, scores within SCORE_TOLERANCE, corners within BOX_TOLERANCE."""
    ours = sorted(row["boxes"], key=lambda b: -b["score"])
    theirs = sorted(client, key=lambda b: -b["score"])
    assert len(theirs) == len(ours) > 0
    for a, b in zip(theirs, ours):
        assert a["label"] == b["label"]
        assert abs(a["score"] - b["score"]) <= SCORE_TOLERANCE
        assert np.abs(_corners(a["box"]) - _corners(b["box"])).max() <= BOX_TOLERANCE
