"""The node library on real models: ComfyUI's default workflow, the conventions, the sampling nodes
agreeing with each other, provenance in saved PNGs, validation of real inputs, interrupt."""

import copy
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassforge.graph.env import GraphEnv
from glassforge.graph.executor import Executor
from glassforge.graph.nodes import core_nodes
from glassforge.graph.validate import WorkflowError
from glassforge.models.manager import ModelManager
from glassforge.models.runtime import resolve_runtime
from glassforge.pngfile import read_infotext
from glassforge.txt2img import Txt2ImgParams, txt2img

EMBEDDED = "glassforge-shapes.safetensors"
PROMPT = "a red circle on a blue background"

# ComfyUI's script_examples/basic_api_example.py workflow (reference/comfyui.md §3.1), verbatim but for
# the checkpoint name; sizes are set per test (512 px would take minutes on the 32 px embedded model)
DEFAULT = {
    "3": {"class_type": "KSampler",
          "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0], "model": ["4", 0], "negative": ["7", 0],
                     "positive": ["6", 0], "sampler_name": "euler", "scheduler": "normal", "seed": 8566257,
                     "steps": 20}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": EMBEDDED}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 512, "width": 512}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "masterpiece best quality girl"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "bad hands"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}  # fmt: skip


@pytest.fixture(scope="module")
def manager():
    return ModelManager(folders=[], runtime=resolve_runtime("cpu", "fp32"), hash_cache=None)


@pytest.fixture
def executor(manager, tmp_path):
    return Executor(
        core_nodes(), GraphEnv(models=manager, output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    )


def workflow(text=PROMPT, seed=5, steps=6, size=32, **sampler):
    wf = copy.deepcopy(DEFAULT)
    wf["3"]["inputs"].update(seed=seed, steps=steps, **sampler)
    wf["5"]["inputs"].update(width=size, height=size)
    wf["6"]["inputs"]["text"] = text
    wf["7"]["inputs"]["text"] = ""
    return wf


def saved(result, node="9"):
    return [Image.open(i["path"]) for i in result.outputs[node]["images"]]


def test_default_workflow_equals_txt2img_with_the_comfyui_convention(executor, manager):
    result = executor.run(workflow())
    assert result.status == "success", result.error
    (image,) = saved(result)
    assert json.loads(image.text["prompt"])["3"]["inputs"]["seed"] == 5
    ref = txt2img(manager.get(EMBEDDED).model, Txt2ImgParams(PROMPT, "", seed=5, sampler="euler", schedule="normal",
                  steps=6, cfg_scale=8, width=32, height=32, convention="comfyui"))  # fmt: skip
    assert np.array_equal(np.asarray(image), np.asarray(ref.images[0]))
    a1111 = txt2img(manager.get(EMBEDDED).model, Txt2ImgParams(PROMPT, "", seed=5, sampler="euler",
                    schedule="normal", steps=6, cfg_scale=8, width=32, height=32))  # fmt: skip
    assert not np.array_equal(np.asarray(image), np.asarray(a1111.images[0]))  # the conventions differ
    text = read_infotext(result.outputs["9"]["images"][0]["path"])
    assert text.startswith(PROMPT) and "Seed: 5" in text and "Sampler: Euler" in text
    assert text.endswith("Noise convention: ComfyUI")


def test_a1111_convention_in_the_workflow_gives_generates_image_and_infotext(executor, manager):
    wf = workflow(sampler_name="DPM++ 2M", scheduler="Karras", convention="a1111")
    result = executor.run(wf)
    model = manager.get(EMBEDDED)
    ref = txt2img(model.model, Txt2ImgParams(PROMPT, "", seed=5, sampler="DPM++ 2M", schedule="Karras", steps=6,
                  cfg_scale=8, width=32, height=32), model_name=model.path.stem, model_hash=model.hash)  # fmt: skip
    assert np.array_equal(np.asarray(saved(result)[0]), np.asarray(ref.images[0]))
    assert read_infotext(result.outputs["9"]["images"][0]["path"]) == ref.infotexts[0]


def test_changing_the_seed_reruns_only_the_sampler_and_after(executor):
    executor.run(workflow(seed=1))
    second = executor.run(workflow(seed=2))
    assert second.executed == ["3", "8", "9"]
    assert sorted(second.cached) == ["4", "5", "6", "7"]


def test_split_advanced_samplers_equal_one_ksampler(executor):
    full = executor.run(workflow(steps=8)).values["3"][0].samples
    wf = workflow(steps=8)
    common = {
        k: wf["3"]["inputs"][k] for k in ("model", "cfg", "sampler_name", "scheduler", "positive", "negative")
    }
    wf["10"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "enable", "noise_seed": 5, "steps": 8, "latent_image": ["5", 0], "start_at_step": 0,
        "end_at_step": 3, "return_with_leftover_noise": "enable"}}  # fmt: skip
    wf["11"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "disable", "noise_seed": 5, "steps": 8, "latent_image": ["10", 0],
        "start_at_step": 3, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}  # fmt: skip
    wf["8"]["inputs"]["samples"] = ["11", 0]
    del wf["3"]
    split = executor.run(wf).values["11"][0].samples
    assert torch.equal(split, full)


def test_custom_sampling_nodes_equal_ksampler(executor):
    wf = workflow(steps=5, sampler_name="dpmpp_2m", scheduler="karras")
    ksampler = executor.run(wf).values["3"][0].samples
    custom = copy.deepcopy(wf)
    del custom["3"]
    custom.update({
        "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "21": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                    "cfg": 8}},
        "22": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "karras", "steps": 5,
                                                         "denoise": 1}},
        "24": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["20", 0], "guider": ["21", 0],
               "sampler": ["22", 0], "sigmas": ["23", 0], "latent_image": ["5", 0]}},
    })  # fmt: skip
    custom["8"]["inputs"]["samples"] = ["24", 0]
    result = executor.run(custom)
    assert torch.equal(result.values["24"][0].samples, ksampler)
    # the embedded model's σ range: KarrasScheduler with the same σ_min/σ_max as BasicScheduler's karras
    sigmas = result.values["23"][0].sigmas
    custom["23"] = {"class_type": "KarrasScheduler", "inputs": {"steps": 5, "sigma_max": float(sigmas[0]),
                                                                "sigma_min": float(sigmas[-2]), "rho": 7.0}}  # fmt: skip
    again = executor.run(custom)
    assert torch.allclose(again.values["23"][0].sigmas, sigmas, rtol=1e-5)


def test_img2img_through_vae_encode_and_partial_denoise(executor, tmp_path):
    first = executor.run(workflow(steps=4))
    (image,) = saved(first)
    executor.env.input_dir = tmp_path / "in"
    executor.env.input_dir.mkdir()
    rgba = image.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(executor.env.input_dir / "start.png")
    wf = workflow(steps=4, denoise=0.5)
    wf["30"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
    wf["31"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["30", 0], "vae": ["4", 2]}}
    wf["3"]["inputs"]["latent_image"] = ["31", 0]
    result = executor.run(wf)
    assert result.status == "success", result.error
    out = saved(result)[0]
    assert out.size == image.size
    mask = result.values["30"][1].mask
    assert mask[0, 0, 0] == 1 and mask[0, 1, 1] == 0  # transparent → 1
    assert "Denoising strength: 0.5" in read_infotext(result.outputs["9"]["images"][0]["path"])


def test_upscale_nodes_change_sizes(executor):
    wf = workflow(steps=3)
    wf["40"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["5", 0], "upscale_method": "nearest-exact",
                                                          "width": 48, "height": 32, "crop": "disabled"}}  # fmt: skip
    wf["3"]["inputs"]["latent_image"] = ["40", 0]
    wf["41"] = {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "lanczos", "width": 64,
                                                       "height": 0, "crop": "disabled"}}  # fmt: skip
    wf["9"]["inputs"]["images"] = ["41", 0]
    result = executor.run(wf)
    assert result.status == "success", result.error
    assert saved(result)[0].size == (64, 43)
    assert result.values["8"][0].pixels.shape[1:3] == (32, 48)


def test_freeu_node_changes_the_image_and_records_it(executor):
    plain = np.asarray(saved(executor.run(workflow(steps=4)))[0])
    wf = workflow(steps=4)
    wf["50"] = {
        "class_type": "FreeU_V2",
        "inputs": {"model": ["4", 0], "b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2},
    }
    wf["3"]["inputs"]["model"] = ["50", 0]
    result = executor.run(wf)
    assert not np.array_equal(np.asarray(saved(result)[0]), plain)
    assert "freeu_b1: 1.5" in read_infotext(result.outputs["9"]["images"][0]["path"])


def test_real_inputs_are_validated_with_node_and_input_named(executor):
    wf = workflow()
    wf["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    wf["3"]["inputs"]["sampler_name"] = "eulerr"
    wf["3"]["inputs"]["steps"] = 0
    wf["5"]["inputs"]["width"] = 36
    with pytest.raises(WorkflowError) as info:
        executor.run(wf)
    text = str(info.value)
    assert "node 4 (CheckpointLoaderSimple) input 'ckpt_name': Value not in list" in text
    assert "'missing.safetensors' not in ['glassforge-shapes.safetensors']" in text
    assert "node 3 (KSampler) input 'sampler_name'" in text and "node 3 (KSampler) input 'steps'" in text
    assert "width 36 and height 32 must be multiples of 8" in text


def test_interrupt_between_sampler_steps(executor):
    flag = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if getattr(event, "type", None) == "progress" and event.value == 2:
            flag.set()

    result = executor.run(workflow(steps=6), on_event=on_event, interrupt=flag)
    assert result.status == "interrupted" and "3" not in result.executed
    assert [e.value for e in events if getattr(e, "type", None) == "progress"] == [1, 2]
    assert events[-2].message()["type"] == "execution_interrupted" and events[-2].node_id == "3"


def test_object_info_matches_comfyuis_shapes(manager):
    info = core_nodes().object_info(GraphEnv(models=manager))
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [EMBEDDED]
    assert info["CheckpointLoaderSimple"]["output"] == ["MODEL", "CLIP", "VAE"]
    assert info["CLIPTextEncode"]["input"]["required"]["text"][0] == "STRING"
    assert info["CLIPTextEncode"]["input"]["required"]["text"][1]["multiline"] is True
    width = info["EmptyLatentImage"]["input"]["required"]["width"]
    assert (
        width[0] == "INT" and width[1].items() >= {"default": 512, "min": 16, "max": 16384, "step": 8}.items()
    )
    ks = info["KSampler"]["input"]["required"]
    assert list(ks) == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                        "latent_image", "denoise"]  # fmt: skip
    assert ks["sampler_name"][0][:3] == ["euler", "euler_cfg_pp", "euler_ancestral"]
    assert info["SaveImage"]["output_node"] is True and info["SaveImage"]["output"] == []
    assert info["SaveImage"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["VAEDecode"]["output"] == ["IMAGE"]


def test_explain_node_samples_like_ksampler_and_writes_a_report(executor):
    plain = executor.run(workflow(steps=4))
    wf = workflow(steps=4)
    wf["3"]["class_type"] = "ExplainKSampler"
    wf["3"]["inputs"].update(vae=["4", 2], lang="ja")
    result = executor.run(wf)
    assert result.status == "success", result.error
    assert torch.equal(result.values["3"][0].samples, plain.values["3"][0].samples)
    assert np.array_equal(np.asarray(saved(result)[0]), np.asarray(saved(plain)[0]))
    (entry,) = result.outputs["3"]["explain"]
    trace = json.loads((Path(entry["folder"]) / "trace.json").read_text())
    assert len(trace["batches"][0]["steps"]) == 4 and trace["attention"] is not None
    page = Path(entry["report"]).read_text(encoding="utf-8")
    assert PROMPT in page and "トークン化" in page  # the Japanese report
    assert 'src="http' not in page and 'href="http' not in page and "<script src=" not in page


def test_latent_upscale_of_a_sampled_latent_keeps_its_vaes_scale(executor):
    """Hires fix: KSampler → LatentUpscale to 64 px → KSampler at denoise 0.5 → a 64 px image, also for the
    embedded model's 1/4 VAE (a sampled latent is not at SD's 1/8)."""
    wf = workflow(steps=3)
    wf["60"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear",
                                                          "width": 64, "height": 64, "crop": "disabled"}}  # fmt: skip
    second = {**wf["3"]["inputs"], "latent_image": ["60", 0], "denoise": 0.5}
    wf["61"] = {"class_type": "KSampler", "inputs": second}
    wf["8"]["inputs"]["samples"] = ["61", 0]
    result = executor.run(wf)
    assert result.status == "success", result.error
    assert result.values["60"][0].samples.shape[-2:] == (16, 16)
    assert saved(result)[0].size == (64, 64)
