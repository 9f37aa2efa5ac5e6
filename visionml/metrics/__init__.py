"""Azure's evaluation metrics from arrays: ``classification`` (scikit-learn), ``detection``
(faster-coco-eval's COCOeval; ``coco`` builds its inputs, ``voc`` computes Azure's VOC numbers
from its matches), ``azure_keys`` (Azure's key names and value shapes) and ``plots``
(matplotlib PNGs). The training loop and ``visionml evaluate`` call these; docs/metrics.md says
what each key means."""
