"""The shipped model: loads through the standard loader as SD1.x and draws the background it is asked for."""

import numpy as np
import pytest
import torch

from glassforge.models.detect import detect_file
from glassforge.models.loader import load_model
from glassforge.models.locate import embedded_model_path, find_model
from glassforge.train.shapes_eval import read_image
from glassforge.txt2img import Txt2ImgParams, txt2img

PATH = embedded_model_path()
pytestmark = pytest.mark.skipif(not PATH.is_file(), reason="the embedded model is not in this checkout")


def test_is_the_default_model_and_an_sd1_checkpoint():
    assert find_model(None) == PATH
    assert PATH.stat().st_size <= 40 * 2**20
    found = detect_file(PATH)
    assert found.family.name == "sd1" and found.prediction == "eps"


@pytest.fixture(scope="module")
def model():
    return load_model(PATH, dtype=torch.float32)


def test_generation_draws_the_asked_background(model):
    assert model.default_size == 32
    cases = [("a red circle on a blue background", "blue"), ("a yellow square on a black background", "black"),
             ("a white star on a green background", "green"), ("a blue triangle on a yellow background", "yellow")]  # fmt: skip
    for prompt, background in cases:
        result = txt2img(model, Txt2ImgParams(prompt, seed=7, steps=20, cfg_scale=5, sampler="Euler"))
        reading = read_image(np.asarray(result.images[0]))
        assert reading.background == background, (prompt, reading)
