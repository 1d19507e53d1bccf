"""The generated shapes' vocabulary and drawing: the colours and shapes their captions name,
the class of a (shape, colour) pair, and how a shape is drawn. The shapes dataset's maker
(dataset_tools/synthetic.py) and the object-match metric (metrics/object_match.py) share it."""

from __future__ import annotations

from PIL import ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (250, 220, 20),
    "purple": (130, 40, 160),
    "orange": (250, 130, 0),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")


def class_id(shape: str, color: str) -> int:
    """Class id (from 1) of a shape x colour pair."""
    return SHAPES.index(shape) * len(COLORS) + list(COLORS).index(color) + 1


def draw_object(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]
) -> None:
    """Draw a filled shape covering exactly the pixels of ``box``."""
    x, y, w, h = box
    right, bottom = x + w - 1, y + h - 1
    cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
    if shape == "circle":
        draw.ellipse([x, y, right, bottom], fill=fill)
    elif shape == "square":
        draw.rectangle([x, y, right, bottom], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y), (right, bottom), (x, bottom)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y), (right, cy), (cx, bottom), (x, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")
