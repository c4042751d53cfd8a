"""Prompt-adherence evaluation of a shapes model, with a checker built from the dataset's own knowledge.

The checker reads an image without any learned part:

* background colour — the median of the one-pixel border, nearest palette colour;
* object mask — each pixel's distance from the background colour, made soft between 20% and 80% of the object's
  contrast; object colour — the median of the mask's core, nearest palette colour;
* position — the mask's centroid, nearest of the five anchor points; size — the circumradius implied by the mask's
  area for the recognised shape, against the midpoint of the small and large ranges;
* shape — template matching: each shape is rendered by the dataset's own drawing code at the mask's centroid and
  size, and the one with the highest soft IoU wins.

:func:`evaluate` generates images for canonical prompts with every attribute given (seen colour × shape pairs and
the held-out ones) and reports per-attribute accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .dataset import (
    COLOURS,
    POSITION_CENTER,
    SHAPES,
    SIZE_RADIUS,
    Scene,
    ShapesDataset,
    canonical_caption,
    render,
)

ATTRIBUTES = ("background", "colour", "shape", "size", "position")
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)
_NAMES = list(COLOURS)
# area of each shape as a multiple of its circumradius squared (the star's inner radius is 0.45 R)
_AREA = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": 5 * 0.45 * math.sin(math.pi / 5),
}
_SIZE_SPLIT = (SIZE_RADIUS["small"][1] + SIZE_RADIUS["large"][0]) / 2


@dataclass(frozen=True)
class Reading:
    background: str
    colour: str
    shape: str
    size: str
    position: str

    def matches(self, scene: Scene) -> dict[str, bool]:
        truth = {"background": scene.background, "colour": scene.colour, "shape": scene.shape,
                 "size": scene.size, "position": scene.position}  # fmt: skip
        return {a: getattr(self, a) == truth[a] for a in ATTRIBUTES}


def nearest_colour(rgb) -> str:
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float64)) ** 2).sum(axis=1)
    return _NAMES[int(d.argmin())]


def _soft_template(shape: str, center: tuple[float, float], radius: float, resolution: int) -> np.ndarray:
    scene = Scene(shape, "white", "black", "small", "in the center", radius, center)
    lo, hi = COLOURS["black"][0], COLOURS["white"][0]
    return (render(scene, resolution)[..., 0].astype(np.float64) - lo) / (hi - lo)


def _centroid(weights: np.ndarray) -> tuple[float, float]:
    h, w = weights.shape
    total = weights.sum()
    ys, xs = np.mgrid[0:h, 0:w]
    return (float((weights * (xs + 0.5)).sum() / total / w), float((weights * (ys + 0.5)).sum() / total / h))


def read_image(image: np.ndarray) -> Reading:
    """What a uint8 H×W×3 image shows, by the rules in the module docstring."""
    img = np.asarray(image, dtype=np.float64)
    res = img.shape[0]
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    bg_rgb = np.median(border, axis=0)
    background = nearest_colour(bg_rgb)
    dist = np.sqrt(((img - bg_rgb) ** 2).sum(axis=-1))
    contrast = dist.max()
    if contrast < 40:  # nothing drawn
        return Reading(background, "none", "none", "none", "none")
    core = dist >= 0.8 * contrast
    colour = nearest_colour(np.median(img[core], axis=0))
    soft = np.clip((dist - 0.2 * contrast) / (0.6 * contrast), 0, 1)
    center = _centroid(soft)
    position = min(
        POSITION_CENTER,
        key=lambda p: sum((a - b) ** 2 for a, b in zip(POSITION_CENTER[p], center, strict=True)),
    )
    area = soft.sum() / res**2
    best, best_iou, best_r = "none", -1.0, 0.0
    for shape in SHAPES:
        r = math.sqrt(area / _AREA[shape])
        tmpl = _soft_template(shape, center, r, res)
        tc = _centroid(tmpl) if tmpl.sum() > 0 else center
        tmpl = _soft_template(shape, (2 * center[0] - tc[0], 2 * center[1] - tc[1]), r, res)
        iou = np.minimum(tmpl, soft).sum() / max(np.maximum(tmpl, soft).sum(), 1e-9)
        if iou > best_iou:
            best, best_iou, best_r = shape, iou, r
    size = "small" if best_r < _SIZE_SPLIT else "large"
    return Reading(background, colour, best, size, position)


def eval_scenes(n: int, held_out: bool, seed: int = 1234, resolution: int = 32) -> list[Scene]:
    """``n`` scenes with a fixed seed (different from the training seeds); held-out pairs only if ``held_out``."""
    ds = ShapesDataset(resolution, seed=seed + (1 if held_out else 0), length=n, held_out=held_out)
    return [ds.scene(i)[0] for i in range(n)]


@dataclass
class EvalResult:
    seen: dict[str, float]
    held_out: dict[str, float]
    n_seen: int
    n_held_out: int

    def table(self) -> str:
        head = f"{'':10s}" + "".join(f"{a:>12s}" for a in (*ATTRIBUTES, "all")) + f"{'n':>6s}"
        rows = [head]
        for name, acc, n in (("seen", self.seen, self.n_seen), ("held-out", self.held_out, self.n_held_out)):
            if n:
                rows.append(f"{name:10s}" + "".join(f"{100 * acc[a]:11.1f}%" for a in (*ATTRIBUTES, "all"))
                            + f"{n:6d}")  # fmt: skip
        return "\n".join(rows)


def accuracy(readings: list[Reading], scenes: list[Scene]) -> dict[str, float]:
    hits = dict.fromkeys((*ATTRIBUTES, "all"), 0)
    for reading, scene in zip(readings, scenes, strict=True):
        m = reading.matches(scene)
        for a in ATTRIBUTES:
            hits[a] += m[a]
        hits["all"] += all(m.values())
    return {a: h / max(1, len(scenes)) for a, h in hits.items()}


def evaluate(
    generate: Callable[[list[str], int], np.ndarray],
    n: int = 100,
    n_held_out: int | None = None,
    batch: int = 25,
    seed: int = 1234,
    resolution: int = 32,
    on_batch: Callable[[np.ndarray, list[str], list[Reading]], None] | None = None,
) -> EvalResult:
    """Accuracy of ``generate(prompts, seed) → uint8 [B, H, W, 3]`` on canonical prompts with all attributes."""
    n_held_out = n // 2 if n_held_out is None else n_held_out
    results = {}
    for held, count in ((False, n), (True, n_held_out)):
        scenes = eval_scenes(count, held, seed, resolution)
        readings: list[Reading] = []
        for start in range(0, count, batch):
            chunk = scenes[start : start + batch]
            prompts = [canonical_caption(s) for s in chunk]
            images = np.asarray(generate(prompts, seed + start))
            got = [read_image(im) for im in images]
            readings += got
            if on_batch is not None:
                on_batch(images, prompts, got)
        results[held] = accuracy(readings, scenes)
    return EvalResult(results[False], results[True], n, n_held_out)


# ---- model sources ----------------------------------------------------------------------------------------------


def run_dir_generator(run_dir, steps: int = 20, cfg: float = 5.0, sampler: str = "Euler"):
    """A ``generate`` over a training run's EMA models (``<run>/ema/{unet,text_encoder,vae}``)."""
    from pathlib import Path

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from .models import generate
    from .recipes import Recipe

    ema = Path(run_dir) / "ema"
    sampling = Recipe.load(Path(run_dir) / "recipe.json").sampling()
    if not ema.is_dir():
        raise FileNotFoundError(f"{ema} not found; expected a training run directory with a first checkpoint")
    unet = UNet2DConditionModel.from_pretrained(ema / "unet").eval()
    text = CLIPTextModel.from_pretrained(ema / "text_encoder").eval()
    vae = AutoencoderKL.from_pretrained(ema / "vae").eval()
    return lambda prompts, seed: generate(unet, text, vae, prompts, seed=seed, steps=steps, cfg=cfg,
                                          sampler=sampler, **sampling).numpy()  # fmt: skip


def checkpoint_generator(path, steps: int = 20, cfg: float = 5.0, sampler: str = "Euler"):
    """A ``generate`` over a single-file checkpoint loaded by glassforge's standard loader."""
    import torch

    from glassforge.models.loader import load_model

    from .models import generate

    model = load_model(path, dtype=torch.float32)  # fp16 files compute in fp32 on CPU
    if model.family != "sd1":
        raise ValueError(f"{path} is a {model.family} checkpoint; expected an SD1-family shapes model")
    text = model.text_encoders[0].model.eval()
    unet, vae = model.unet.eval(), model.vae.eval()
    size = model_resolution(path) // 2 ** (len(vae.config.block_out_channels) - 1)
    sampling = {
        "prediction": model.prediction,
        "zero_terminal_snr": bool(model.detection and model.detection.zero_terminal_snr),
    }
    return lambda prompts, seed: generate(unet, text, vae, prompts, seed=seed, steps=steps, cfg=cfg,
                                          sampler=sampler, latent_size=size, **sampling).numpy()  # fmt: skip


def model_resolution(path, default: int = 32) -> int:
    """The training resolution a file declares in its ``modelspec.resolution`` metadata ("32x32")."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    value = meta.get("modelspec.resolution")
    return int(value.split("x")[0]) if value else default
