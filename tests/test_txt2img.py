"""Text to image end to end on tiny random-weight checkpoints in the real layouts, and the CLI around it."""

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoint_fixtures as fx
from glassforge.cli import main
from glassforge.infotext import GenerationParams
from glassforge.models.loader import load_model
from glassforge.models.text_encoding import encode_prompt
from glassforge.models.vae import to_pil
from glassforge.pngfile import read_infotext
from glassforge.txt2img import GenerationError, Txt2ImgParams, txt2img

FAST = {"steps": 3, "width": 32, "height": 32}


@pytest.fixture(
    scope="module",
    params=["sd1", "sd2", "sdxl", "sd1_inpaint"] if "sd1_inpaint" in fx.TINY else ["sd1", "sd2", "sdxl"],
)
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}.safetensors"
    return fx.write_single_file(fx.build(fx.TINY[request.param]), path)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd1") / "tiny-sd1.safetensors"
    fx.write_single_file(fx.build(fx.TINY["sd1"]), path)
    return path, load_model(path)


def test_every_family_generates_through_the_cli(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "a red (circle:1.2)", "--model", str(checkpoint), "--steps", "3", "--width", "32",
                 "--height", "32", "--seed", "11", "--precision", "fp32", "--out", str(out)])  # fmt: skip
    assert code == 0
    (png,) = sorted(out.glob("*.png"))
    assert png.name == "00000-11.png"
    params = GenerationParams.from_infotext(read_infotext(png))
    assert (params.prompt, params.seed, params.steps, params.width) == ("a red (circle:1.2)", 11, 3, 32)
    assert params.model == checkpoint.stem
    assert params.model_hash == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    image = np.asarray(Image.open(png))
    assert image.shape == (32, 32, 3) and image.std() > 0


def test_same_parameters_same_png_bytes_and_batch_equals_singles(sd1):
    _, model = sd1
    batch = txt2img(model, Txt2ImgParams("a cat", seed=100, batch_size=3, **FAST))
    again = txt2img(model, Txt2ImgParams("a cat", seed=100, batch_size=3, **FAST))
    assert batch.seeds == [100, 101, 102]
    assert [_png(i) for i in batch.images] == [_png(i) for i in again.images]
    for i in range(3):
        single = txt2img(model, Txt2ImgParams("a cat", seed=100 + i, **FAST))
        assert np.array_equal(np.asarray(batch.images[i]), np.asarray(single.images[0])), i
        assert single.infotexts[0] == batch.infotexts[i]
    counted = txt2img(model, Txt2ImgParams("a cat", seed=100, batch_count=2, **FAST))
    assert counted.seeds == [100, 101]
    assert np.array_equal(np.asarray(counted.images[1]), np.asarray(batch.images[1]))


def _png(image):
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_prompt_weights_clip_skip_and_negative_change_the_conditioning(sd1):
    _, model = sd1
    plain = encode_prompt(model, "a red circle")
    weighted = encode_prompt(model, "a red (circle:1.5)")
    skipped = encode_prompt(model, "a red circle", clip_skip=2)
    assert plain.context.shape == (1, 77, model.unet.config.cross_attention_dim)
    assert not torch.equal(plain.context, weighted.context)
    assert not torch.equal(plain.context, skipped.context)
    # A1111 "Original" emphasis keeps the mean of the chunk
    torch.testing.assert_close(weighted.context.mean(), plain.context.mean(), rtol=1e-4, atol=1e-6)
    long = encode_prompt(model, ", ".join(["red circle"] * 40))
    assert long.chunks == 2 and long.context.shape[1] == 154
    # empty prompt: the empty string is encoded (BOS, EOS, padding), not zeros
    assert encode_prompt(model, "", is_negative=True).context.abs().sum() > 0


def test_long_prompt_against_short_negative_still_generates(sd1):
    _, model = sd1
    result = txt2img(
        model, Txt2ImgParams(", ".join(["red circle"] * 40), negative_prompt="blue", seed=1, **FAST)
    )
    assert len(result.images) == 1


def test_sdxl_empty_negative_is_zeros(tmp_path):
    path = fx.write_single_file(fx.build(fx.TINY["sdxl"]), tmp_path / "xl.safetensors")
    model = load_model(path)
    neg = encode_prompt(model, "", is_negative=True)
    assert torch.count_nonzero(neg.context) == 0 and torch.count_nonzero(neg.pooled) == 0
    pos = encode_prompt(model, "")
    assert torch.count_nonzero(pos.context) > 0 and pos.pooled is not None


def test_a1111_pixel_conversion_truncates():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    (img,) = to_pil(x)
    # (x + 1)/2·255 → 0, 0, 127.5 → 127 (truncated, not rounded), 254.87 → 254, 255
    assert np.asarray(img)[0, :, 0].tolist() == [0, 0, 127, 254, 255]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": 30}, "multiple of 8"),
        ({"steps": 0}, "steps 0 must be at least 1"),
        ({"sampler": "Eulerr"}, "unknown sampler"),
        ({"schedule": "Karras2"}, "unknown schedule"),
        ({"prompt": "a cat AND a dog"}, "AND"),
    ],
)
def test_bad_parameters_are_one_clear_error(sd1, change, message):
    _, model = sd1
    params = Txt2ImgParams(**{"prompt": "a cat", **FAST, **change})
    with pytest.raises((GenerationError, KeyError), match=message):
        txt2img(model, params)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["generate", "x", "--model", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model" in err[0]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"<html>not a model</html>")
    assert main(["generate", "x", "--model", str(bad), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.safetensors" in err[0]


def test_prompt_editing_switches_the_conditioning_at_a1111s_step(sd1, tmp_path, capsys, monkeypatch):
    """``[from:to:when]`` and ``[a|b]``: step i (from 0) uses the first schedule entry whose last step is ≥ i, as
    A1111's reconstruct_cond_batch does; checked on the conditioning each model call actually receives."""
    from glassforge.models.text_encoding import encode_prompt
    from glassforge.sampling.events import SamplerStep

    path, model = sd1
    steps = 6
    red, blue = (encode_prompt(model, t).context for t in ("a red circle", "a blue circle"))
    seen, step = [], [0]

    def on_event(event):
        if isinstance(event, SamplerStep):
            step[0] += 1

    import glassforge.txt2img as t2i

    real = t2i.CFGDenoiser.__call__

    def spy(self, x, sigma, **kw):  # records what the guider is given, then guides as before
        seen.append((step[0], self.cond["context"][0].clone()))
        return real(self, x, sigma, **kw)

    monkeypatch.setattr(t2i.CFGDenoiser, "__call__", spy)
    params = Txt2ImgParams(prompt="a [red:blue:0.5] circle", **{**FAST, "steps": steps}, sampler="Euler")
    result = txt2img(model, params, on_event=on_event)
    monkeypatch.undo()
    # when = 0.5 of 6 steps → "red" through step 3 (i ≤ 3), "blue" from step 4
    for i, context in seen:
        want = red[0] if i <= 3 else blue[0]
        assert torch.equal(context, want), i
    plain = txt2img(model, Txt2ImgParams(prompt="a red circle", **{**FAST, "steps": steps}, sampler="Euler"))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))
    assert result.infotexts[0].startswith("a [red:blue:0.5] circle\n")
    # generate (the built-in workflow, A1111 convention) gives txt2img's image for the same placed model
    from glassforge.models.runtime import place_model, resolve_runtime

    placed = place_model(load_model(path), resolve_runtime("cpu", "fp32"))
    params = Txt2ImgParams(
        prompt="a [red:blue:0.5] circle", **{**FAST, "steps": steps}, sampler="Euler", seed=5
    )
    reference = txt2img(placed, params).images[0]
    out = tmp_path / "gen"
    assert main(["generate", params.prompt, "--model", str(path), "--steps", str(steps), "--width", "32",
                 "--height", "32", "--sampler", "Euler", "--seed", "5", "--precision", "fp32", "--out",
                 str(out)]) == 0  # fmt: skip
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), np.asarray(reference))


def test_generate_workflow_equals_txt2img_for_sdxl_with_an_empty_negative(tmp_path):
    """The workflow path keeps txt2img's A1111 rules that need the whole prompt pair: SDXL's empty negative
    prompt is all zeros."""
    from glassforge.models.runtime import place_model, resolve_runtime

    path = fx.write_single_file(fx.build(fx.TINY["sdxl"]), tmp_path / "tiny-sdxl.safetensors")
    placed = place_model(load_model(path), resolve_runtime("cpu", "fp32"))
    params = Txt2ImgParams(prompt="a red circle", steps=3, width=32, height=32, sampler="Euler", seed=5)
    reference = txt2img(placed, params).images[0]
    out = tmp_path / "gen"
    assert main(["generate", params.prompt, "--model", str(path), "--steps", "3", "--width", "32", "--height", "32",
                 "--sampler", "Euler", "--seed", "5", "--precision", "fp32", "--out", str(out)]) == 0  # fmt: skip
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), np.asarray(reference))
