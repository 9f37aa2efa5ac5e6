"""The one canonical in-memory record per image, produced by the reader and used by everything after it.

Coordinates are normalised to [0, 1] as in the JSONL schema; conversions to pixels live in
``visionml.geometry`` and take the image size explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ObjectLabel:
    """One object of a detection or instance-segmentation line."""

    label: str
    box: tuple[float, float, float, float]
    """(topX, topY, bottomX, bottomY), normalised, clipped to [0, 1]. For segmentation: the polygon's extent."""
    is_crowd: bool = False
    polygon: list[list[float]] | None = None
    """Segmentation only: segments ``[[x1, y1, x2, y2, ...], ...]``, normalised."""

    def to_json(self) -> dict:
        """The object as a JSONL ``label`` entry of the schema."""
        if self.polygon is not None:
            return {"label": self.label, "isCrowd": int(self.is_crowd), "polygon": self.polygon}
        x0, y0, x1, y1 = self.box
        return {"label": self.label, "topX": x0, "topY": y0, "bottomX": x1, "bottomY": y1,
                "isCrowd": int(self.is_crowd)}


@dataclass(slots=True)
class ImageRecord:
    """One valid JSONL line."""

    source: str
    """The JSONL file the line came from."""
    line: int
    """1-based line number in ``source``."""
    image_url: str
    """``image_url`` exactly as written in the file."""
    path: str
    """Resolved location: a local file path, or an ``http(s)://`` URL fetched on first use."""
    label: str | list[str] | None = None
    """Classification: the class (multi-class) or classes (multi-label)."""
    objects: list[ObjectLabel] = field(default_factory=list)
    """Detection / segmentation: the objects (may be empty: an image with nothing in it)."""
    width: int | None = None
    height: int | None = None
    format: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def to_json(self) -> dict:
        """The record as a JSONL line of the schema (``image_url`` as written)."""
        out: dict = {"image_url": self.image_url}
        details = {k: v for k, v in (("format", self.format), ("width", self.width),
                                     ("height", self.height)) if v is not None}
        if details:
            out["image_details"] = details
        out["label"] = self.label if self.label is not None else [o.to_json() for o in self.objects]
        return out
