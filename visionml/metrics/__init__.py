"""Azure's evaluation metrics from arrays: ``classification`` (scikit-learn), ``detection``
(faster-coco-eval's COCOeval) and ``plots`` (matplotlib PNGs). The training loop and
``visionml evaluate`` call these; see docs/ARCHITECTURE.md, "Metrics"."""
