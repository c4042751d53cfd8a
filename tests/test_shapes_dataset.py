"""The procedural shapes dataset: determinism, caption grammar, held-out pairs, and the evaluator's checker."""

from __future__ import annotations

import re

import numpy as np
import pytest

from glassforge.train.dataset import (
    COLOURS,
    HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapesDataset,
    canonical_caption,
    sample_scene,
)
from glassforge.train.shapes_eval import accuracy, read_image

C = "|".join(COLOURS)
CANONICAL = re.compile(
    rf"^an? (?:(?:{'|'.join(SIZES)}) )?({C}) ({'|'.join(SHAPES)})(?: (?:{'|'.join(POSITIONS)}))?"
    rf"(?: on an? ({C}) background)?$"
)
LOOSE = re.compile(rf"({C}) ({'|'.join(SHAPES)})|({C}) background")


def test_same_seed_same_image_and_caption():
    a, b = ShapesDataset(32, seed=5), ShapesDataset(32, seed=5)
    for i in (0, 1, 17, 9999):
        ia, ca, sa = a[i]
        ib, cb, sb = b[i]
        assert ia.tobytes() == ib.tobytes() and ca == cb and sa == sb
    # any sample regenerates alone, and another seed gives other images
    assert a.batch([3, 4])[0].tobytes() == np.stack([b[3][0], b[4][0]]).tobytes()
    other = ShapesDataset(32, seed=6)
    assert sum(other[i][0].tobytes() != a[i][0].tobytes() for i in range(8)) >= 7


def test_images_are_antialiased_two_colour_scenes():
    ds = ShapesDataset(32, seed=0)
    image, _, scene = ds[0]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    pixels = {tuple(p) for p in image.reshape(-1, 3)}
    assert COLOURS[scene.background] in pixels and COLOURS[scene.colour] in pixels
    assert len(pixels) > 2  # blended edge pixels


def test_caption_grammar_covers_canonical_partial_and_loose_forms():
    ds = ShapesDataset(32, seed=1, length=600)
    full = partial = loose = 0
    for i in range(len(ds)):
        scene, _ = ds.scene(i)
        caption = ds[i][1]
        assert f"{scene.colour} {scene.shape}" in caption  # colour and shape are always said
        if m := CANONICAL.match(caption):
            assert m[1] == scene.colour and m[2] == scene.shape
            assert m[3] in (None, scene.background)
            if caption == canonical_caption(scene):
                full += 1
            else:
                partial += 1
        else:
            assert (LOOSE.search(caption) and "," in caption) or "background with" in caption, caption
            loose += 1
        assert scene.background != scene.colour
    assert full > 50 and partial > 100 and loose > 60
    # the canonical form with every part, and with parts left out
    scene = ds.scene(0)[0]
    s = canonical_caption(scene)
    assert (
        s
        == f"a {scene.size} {scene.colour} {scene.shape} {scene.position} on a{'n' if scene.background[0] in 'aeiou' else ''} {scene.background} background"
    )
    assert canonical_caption(scene, size=False, position=False).split()[:3] == [
        "a" if scene.colour[0] not in "aeiou" else "an",
        scene.colour,
        scene.shape,
    ]


def test_held_out_pairs_never_appear_in_training():
    ds = ShapesDataset(32, seed=2, length=3000)
    seen = set()
    for i in range(len(ds)):
        scene, _ = ds.scene(i)
        seen.add(scene.pair)
    assert not seen & HELD_OUT
    assert len(seen) == len(COLOURS) * len(SHAPES) - len(HELD_OUT)  # every other pair does occur
    captions = " ".join(ds[i][1] for i in range(400))
    for colour, shape in HELD_OUT:
        assert f"{colour} {shape}" not in captions
    held = ShapesDataset(32, seed=2, length=50, held_out=True)
    assert {held.scene(i)[0].pair for i in range(50)} == set(HELD_OUT)
    with pytest.raises(ValueError, match="held out"):
        sample_scene(np.random.default_rng(0), colour="purple", shape="star")


@pytest.mark.parametrize("held_out", [False, True])
def test_checker_reads_ground_truth_renders(held_out):
    ds = ShapesDataset(32, seed=11, length=250, held_out=held_out)
    images, _, scenes = ds.batch(range(len(ds)))
    acc = accuracy([read_image(im) for im in images], scenes)
    for attribute in ("background", "colour", "shape", "size", "position"):
        assert acc[attribute] >= 0.99, (attribute, acc)


def test_checker_reads_a_blank_image_as_no_object():
    blank = np.full((32, 32, 3), COLOURS["blue"], dtype=np.uint8)
    reading = read_image(blank)
    assert reading.background == "blue" and reading.shape == "none"
