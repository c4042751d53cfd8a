"""The "shapes" world: a seeded, procedural generator of captioned images.

Each image holds one object — a {circle, square, triangle, star} in one of eight colours, small or large, at one of
five positions — on a flat background of another colour. Drawing is anti-aliased by rendering at ``SUPERSAMPLE``×
the size and downsampling with a box filter. Sample ``i`` of seed ``s`` depends only on ``(s, i)``, so a dataset is
reproducible byte for byte and any sample can be regenerated alone.

Captions vary in form but always say the object's colour and shape. The canonical form is
``"a {size} {colour} {shape} {position} on a {colour} background"`` with the optional parts (size, position, and
rarely the background) left out; looser forms read like tags (``"red circle, blue background"``). A few
colour × shape pairs (``HELD_OUT``) never appear in training, to measure compositional generalization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 10),
    "yellow": (245, 225, 20),
    "green": (30, 165, 60),
    "blue": (30, 80, 225),
    "purple": (135, 45, 185),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
# object colour × shape pairs that never appear in training
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("purple", "star"), ("orange", "triangle"), ("green", "circle")}
)

# geometry as fractions of the image side
SIZE_RADIUS = {"small": (0.12, 0.15), "large": (0.21, 0.25)}  # circumradius range per size
POSITION_CENTER = {
    "on the left": (0.28, 0.5),
    "on the right": (0.72, 0.5),
    "at the top": (0.5, 0.28),
    "at the bottom": (0.5, 0.72),
    "in the center": (0.5, 0.5),
}
JITTER = 0.03
SUPERSAMPLE = 4
STAR_INNER = 0.45  # inner/outer radius of the five-pointed star


@dataclass(frozen=True)
class Scene:
    """What one image shows; ``radius`` and ``center`` are fractions of the image side."""

    shape: str
    colour: str
    background: str
    size: str
    position: str
    radius: float
    center: tuple[float, float]

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)


def with_article(phrase: str) -> str:
    """``"a red circle"``, ``"an orange circle"``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def canonical_caption(scene: Scene, size: bool = True, position: bool = True, background: bool = True) -> str:
    """``"a {size} {colour} {shape} {position} on a {colour} background"`` with optional parts left out
    (the article is "an" before a vowel: "an orange circle on an orange background")."""
    words = []
    if size:
        words.append(scene.size)
    words += [scene.colour, scene.shape]
    if position:
        words.append(scene.position)
    text = with_article(" ".join(words))
    if background:
        text += " on " + with_article(f"{scene.background} background")
    return text


def _loose_caption(scene: Scene, rng: np.random.Generator) -> str:
    size = f"{scene.size} " if rng.random() < 0.5 else ""
    pos = f", {scene.position}" if rng.random() < 0.5 else ""
    form = rng.integers(3)
    if form == 0:
        return f"{size}{scene.colour} {scene.shape}{pos}, {scene.background} background"
    if form == 1:
        return f"{scene.background} background, {size}{scene.colour} {scene.shape}{pos}"
    return f"{with_article(scene.background)} background with {with_article(size + scene.colour)} {scene.shape}{pos}"


def sample_caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption for ``scene``: the canonical form (75%, optional parts dropped at random) or a looser form."""
    if rng.random() < 0.75:
        return canonical_caption(
            scene, size=rng.random() < 0.6, position=rng.random() < 0.7, background=rng.random() < 0.95
        )
    return _loose_caption(scene, rng)


def sample_scene(rng: np.random.Generator, held_out: bool = False, **fixed: str) -> Scene:
    """A random scene; ``held_out=False`` never returns a ``HELD_OUT`` pair. ``fixed`` pins attributes by name."""
    names = list(COLOURS)
    while True:
        shape = fixed.get("shape") or SHAPES[rng.integers(len(SHAPES))]
        colour = fixed.get("colour") or names[rng.integers(len(names))]
        if held_out or (colour, shape) not in HELD_OUT:
            break
        if "shape" in fixed and "colour" in fixed:
            raise ValueError(f"{colour} {shape} is held out of training; pass held_out=True to draw it")
    background = fixed.get("background")
    while background is None or background == colour:
        if background == colour and "background" in fixed:
            raise ValueError(f"background {background} equals the object colour; expected another colour")
        background = names[rng.integers(len(names))]
    size = fixed.get("size") or SIZES[rng.integers(len(SIZES))]
    position = fixed.get("position") or POSITIONS[rng.integers(len(POSITIONS))]
    lo, hi = SIZE_RADIUS[size]
    cx, cy = POSITION_CENTER[position]
    jx, jy = rng.uniform(-JITTER, JITTER, size=2)
    return Scene(shape, colour, background, size, position, float(rng.uniform(lo, hi)), (cx + jx, cy + jy))


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices (pixels) of a square, triangle or star of circumradius ``r``, upright, centred at (cx, cy)."""
    if shape == "square":
        h = r / math.sqrt(2)
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # equilateral, apex up, centred on its bounding box
        dy = r * 0.25  # shift so the box (height 1.5 r) is centred
        return [
            (cx + r * math.sin(a), cy + dy - r * math.cos(a)) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)
        ]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * STAR_INNER
            a = k * math.pi / 5
            pts.append((cx + rr * math.sin(a), cy - rr * math.cos(a) + r * 0.1))
        return pts
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def render(scene: Scene, resolution: int) -> np.ndarray:
    """The scene as an anti-aliased ``resolution``×``resolution`` RGB uint8 array."""
    from PIL import Image, ImageDraw

    big = resolution * SUPERSAMPLE
    img = Image.new("RGB", (big, big), COLOURS[scene.background])
    draw = ImageDraw.Draw(img)
    cx, cy, r = scene.center[0] * big, scene.center[1] * big, scene.radius * big
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(shape_polygon(scene.shape, cx, cy, r), fill=fill)
    img = img.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


@dataclass(frozen=True)
class ShapesDataset:
    """Deterministic, indexable: ``ds[i]`` → (uint8 image H×W×3, caption, scene)."""

    resolution: int = 32
    seed: int = 0
    length: int = 100_000
    held_out: bool = False  # True draws only HELD_OUT pairs (for evaluation)

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[Scene, np.random.Generator]:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} out of range; expected 0 <= index < {self.length}")
        rng = np.random.default_rng([self.seed, index])
        if self.held_out:
            colour, shape = sorted(HELD_OUT)[rng.integers(len(HELD_OUT))]
            return sample_scene(rng, held_out=True, colour=colour, shape=shape), rng
        return sample_scene(rng), rng

    def __getitem__(self, index: int) -> tuple[np.ndarray, str, Scene]:
        scene, rng = self.scene(index)
        return render(scene, self.resolution), sample_caption(scene, rng), scene

    def batch(self, indices) -> tuple[np.ndarray, list[str], list[Scene]]:
        items = [self[int(i)] for i in indices]
        return np.stack([it[0] for it in items]), [it[1] for it in items], [it[2] for it in items]
