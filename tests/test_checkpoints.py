"""Loading single-file checkpoints and diffusers folders: detection, shapes, equivalence, dtype, errors.

The tiny checkpoints are written by ``checkpoint_fixtures`` in the real key layouts; equivalence is
checked against the in-memory diffusers/transformers modules they were written from.
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import pytest
import torch

import checkpoint_fixtures as fx
from glassforge.models import configs
from glassforge.models.checkpoint import CheckpointError, StateDict, load_state_dict
from glassforge.models.detect import detect
from glassforge.models.ldm_keys import vae_to_ldm
from glassforge.models.loader import LoadedModel, load_model
from glassforge.sampling.noise_schedule import DiscreteSchedule

FAMILIES = ["sd1", "sd2", "sdxl", "sd1_inpaint"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The hub must never be contacted: any outgoing connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on the shared 2-core machine they only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Per family: the source modules, the single file and the diffusers folder (built once)."""
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for name in FAMILIES:
        models = fx.build(fx.TINY[name])
        single = fx.write_single_file(models, root / f"{name}.safetensors")
        folder = fx.write_diffusers_folder(models, root / f"{name}-diffusers")
        out[name] = (models, single, folder)
    return out


@pytest.fixture(scope="module")
def loaded(tiny):
    """Per family: the single file loaded once (tests that only inspect it share it)."""
    return {name: load_model(single) for name, (_, single, _) in tiny.items()}


# ---- outputs on fixed inputs ---------------------------------------------------------------------

IDS = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407, 49407]])


@torch.no_grad()
def outputs(unet, vae, text_encoders) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    cfg = unet.config
    x = torch.randn(2, cfg.in_channels, 8, 8, generator=gen)
    ctx = torch.randn(2, 5, cfg.cross_attention_dim, generator=gen)
    added = None
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {"text_embeds": torch.randn(2, pooled, generator=gen),
                 "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}  # fmt: skip
    out = {
        "unet": unet(
            x, torch.tensor([10.0, 600.0]), encoder_hidden_states=ctx, added_cond_kwargs=added
        ).sample
    }
    z = torch.randn(1, vae.config.latent_channels, 4, 4, generator=gen)
    out["vae_decode"] = vae.decode(z).sample
    out["vae_encode"] = vae.encode(torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1).latent_dist.mean
    for i, te in enumerate(text_encoders):
        r = te(IDS, output_hidden_states=True)
        out[f"te{i}_last"] = r.last_hidden_state
        out[f"te{i}_penultimate"] = r.hidden_states[-2]
        out[f"te{i}_pooled"] = r.text_embeds if hasattr(r, "text_embeds") else r.pooler_output
    return out


def loaded_outputs(m: LoadedModel):
    return outputs(m.unet, m.vae, [t.model for t in m.text_encoders])


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), f"{k}: max diff {(a[k] - b[k]).abs().max()}"


def assert_same_weights(module, source):
    """Same class and bit-identical tensors under the same names (architecture: see the output tests)."""
    assert type(module) is type(source)
    assert_same(dict(module.state_dict()), dict(source.state_dict()))


# ---- detection and hyper-parameters --------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_each_layout_loads_and_is_detected(tiny, loaded, name):
    single = tiny[name][1]
    spec = fx.TINY[name]
    m = loaded[name]
    assert (m.family, m.prediction, m.in_channels, m.is_inpainting) == (
        spec.family, "eps", spec.unet["in_channels"], spec.unet["in_channels"] == 9
    )  # fmt: skip
    det = m.detection
    u = spec.unet
    assert det.unet.block_out_channels == tuple(u["block_out_channels"])
    assert det.unet.num_res_blocks == u["layers_per_block"]
    assert det.unet.context_dim == u["cross_attention_dim"]
    assert det.unet.out_channels == u["out_channels"]
    assert det.unet.use_linear_in_transformer == u.get("use_linear_projection", False)
    assert det.unet.attention_levels == tuple("CrossAttn" in t for t in u["down_block_types"])
    depth = u.get("transformer_layers_per_block", 1)
    depth = depth if isinstance(depth, list) else [depth] * len(u["block_out_channels"])
    assert det.unet.transformer_depth == tuple(
        d if a else 0 for d, a in zip(depth, det.unet.attention_levels, strict=True)
    )
    assert det.unet.transformer_depth_middle == depth[-1]
    assert det.unet.adm_in_channels == u.get("projection_class_embeddings_input_dim")
    assert det.addition_time_embed_dim == u.get("addition_time_embed_dim")
    # heads are a family rule, not a shape: SD1 8 per layer, SD2/SDXL 64 wide
    assert m.unet.config.attention_head_dim == u["attention_head_dim"]
    # VAE
    v = spec.vae
    assert det.vae.block_out_channels == tuple(v["block_out_channels"])
    assert (det.vae.num_res_blocks, det.vae.z_channels, m.latent_channels) == (v["layers_per_block"], 4, 4)
    assert m.vae_scale_factor == (0.13025 if spec.family == "sdxl" else 0.18215)
    assert m.vae.config.scaling_factor == m.vae_scale_factor
    # text encoders: widths, layers, 64-wide heads, activation, projection
    assert len(m.text_encoders) == len(spec.clips)
    for te, c, arch in zip(m.text_encoders, spec.clips, det.text_encoders, strict=True):
        cfg = te.model.config
        assert (arch.hidden_size, arch.num_layers) == (c["hidden"], c["layers"])
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.hidden_act) == (
            c["hidden"],
            c["layers"],
            c["act"],
        )
        assert cfg.num_attention_heads == max(1, c["hidden"] // 64)
        assert cfg.intermediate_size == 4 * c["hidden"]
        assert isinstance(te.final_layer_norm, torch.nn.LayerNorm) and te.layers_removed == 0
    if spec.family == "sdxl":
        assert type(m.text_encoders[1].model).__name__ == "CLIPTextModelWithProjection"
        assert m.text_encoders[1].model.config.projection_dim == 48
        assert [t.name for t in m.text_encoders] == ["clip_l", "open_clip_g"]
    assert m.schedule.sigma_max == pytest.approx(DiscreteSchedule.stable_diffusion().sigma_max)
    assert m.dtype == torch.float32 and m.source == single


@pytest.mark.parametrize("name", ["sd1", "sd2", "sdxl"])
def test_full_size_shapes_derive_the_published_configs(name):
    """Real-size layouts (weightless, on the meta device): the derived configs are diffusers' published
    ones (heads included, which only the family rules give), and the conversion fills every tensor."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = fx.REAL[name]
    sd = StateDict(fx.ldm_state_dict(fx.build(spec, meta=True)), Path(f"{name}.safetensors"))
    det = detect(sd)
    family = det.family
    assert family.name == spec.family
    shapes = lambda state: {k: tuple(v.shape) for k, v in state.items()}  # noqa: E731

    ucfg = configs.unet_config(det.unet, family, det.addition_time_embed_dim)
    assert {k: ucfg[k] for k in spec.unet} == spec.unet
    with init_empty_weights():
        unet = UNet2DConditionModel(**ucfg)
    assert shapes(configs.convert_unet(sd.tensors, ucfg)) == shapes(unet.state_dict())

    vcfg = configs.vae_config(det.vae, family)
    assert {k: vcfg[k] for k in ("block_out_channels", "layers_per_block", "latent_channels")} == {
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4}  # fmt: skip
    with init_empty_weights():
        vae = AutoencoderKL(**vcfg)
    assert shapes(configs.convert_vae(sd.with_prefix("first_stage_model."), vcfg)) == shapes(vae.state_dict())

    for te_spec, arch, c in zip(family.text_encoders, det.text_encoders, spec.clips, strict=True):
        ccfg = configs.clip_config(arch, te_spec)
        # CLIP-L 768/12 heads, OpenCLIP-H 1024/16, bigG 1280/20; SD2 keeps all 24 layers (diffusers drops one)
        assert (ccfg.hidden_size, ccfg.num_hidden_layers, ccfg.num_attention_heads, ccfg.hidden_act) == (
            c["hidden"], c["layers"], c["hidden"] // 64, c["act"])  # fmt: skip
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if te_spec.with_projection else CLIPTextModel
        with init_empty_weights():
            model = cls(ccfg)
        part = {k: v for k, v in sd.tensors.items() if k.startswith(te_spec.prefix)}
        assert shapes(configs.convert_clip(part, te_spec, model)) == shapes(model.state_dict())


# ---- equivalence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_single_file_and_diffusers_folder_give_identical_outputs(tiny, loaded, name):
    models, _, folder = tiny[name]
    from_file = loaded[name]
    from_folder = load_model(folder)
    assert from_folder.family == from_file.family == fx.TINY[name].family
    assert from_folder.prediction == "eps"
    # the folder (written by save_pretrained) holds exactly the source modules …
    for mod, src in zip((from_folder.unet, from_folder.vae), (models.unet, models.vae), strict=True):
        assert_same_weights(mod, src)
    for te, src in zip(from_folder.text_encoders, models.text_encoders, strict=True):
        assert_same(dict(te.model.state_dict()), dict(src.state_dict()))
    # … and the single file, converted from the original layout, computes the same outputs
    assert_same(loaded_outputs(from_file), loaded_outputs(from_folder))


def test_diffusers_folder_reads_v_prediction_from_scheduler(tmp_path, tiny):
    models = tiny["sd2"][0]
    m = load_model(fx.write_diffusers_folder(models, tmp_path / "sd2v", prediction="v"))
    assert (m.family, m.prediction) == ("sd2", "v")
    assert load_model(tmp_path / "sd2v", prediction="eps").prediction == "eps"


# ---- prediction type ------------------------------------------------------------------------------


def test_sd2_v_prediction_detected_by_weight_statistic_and_overridable(tmp_path, tiny, loaded):
    v_file = fx.save(fx.with_v_statistic(fx.ldm_state_dict(tiny["sd2"][0])), tmp_path / "sd2v.safetensors")
    m = load_model(v_file)
    assert (m.family, m.prediction) == ("sd2", "v")
    assert "statistic" in m.prediction_source
    assert load_model(v_file, prediction="eps").prediction == "eps"
    assert loaded["sd2"].prediction == "eps"  # same layout, the statistic of an ε model
    assert "statistic" in loaded["sd2"].prediction_source
    assert load_model(tiny["sd2"][1], prediction="v").prediction_source == "override"
    # inpainting UNets are never v (ComfyUI's rule): the statistic is not consulted
    sd = fx.with_v_statistic(fx.ldm_state_dict(tiny["sd2"][0]))
    conv_in = sd["model.diffusion_model.input_blocks.0.0.weight"]
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.cat([conv_in, conv_in, conv_in[:, :1]], 1)
    assert load_model(fx.save(sd, tmp_path / "sd2inpaint.safetensors")).prediction == "eps"


def test_v_prediction_markers_metadata_and_sidecar_yaml(tmp_path, tiny):
    models = tiny["sd1"][0]
    sd = fx.ldm_state_dict(models)
    marker = fx.save(
        sd | {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}, tmp_path / "noob.safetensors"
    )
    m = load_model(marker)
    assert (m.prediction, m.prediction_source) == ("v", "marker tensor 'v_pred'")
    assert m.schedule.alphas_cumprod[-1] < 1e-7  # zero terminal SNR schedule
    meta = fx.save(sd, tmp_path / "meta.safetensors", {"modelspec.prediction_type": "v"})
    assert load_model(meta).prediction == "v"
    plain = fx.save(sd, tmp_path / "sidecar.safetensors")
    (tmp_path / "sidecar.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert load_model(plain).prediction == "v"
    with pytest.raises(ValueError, match="expected 'eps' or 'v'"):
        load_model(plain, prediction="x0")


# ---- VAE override, dtype, memory mapping, key variants ---------------------------------------------


def test_separate_vae_file_overrides_the_baked_one(tmp_path, tiny):
    _, single, folder = tiny["sd1"]
    three_levels = {**fx.TINY_VAE, "block_out_channels": [32, 32, 64],
                    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3}  # fmt: skip
    other = fx.build(fx.TINY["sd1"], vae_config=three_levels).vae
    vae_file = fx.write_vae_file(other, tmp_path / "vae-ft.safetensors")
    m = load_model(single, vae=vae_file)
    assert m.vae_source == vae_file
    assert m.detection.vae.ch_mult == (1, 2)  # the baked one was read …
    assert list(m.vae.config.block_out_channels) == [32, 32, 64]  # … and replaced
    assert_same_weights(m.vae, other)
    with torch.no_grad():
        assert m.vae.decode(torch.zeros(1, 4, 4, 4)).sample.shape[-1] == 16  # 3 levels: ×4
    # a .ckpt VAE with the first_stage_model. prefix (torch.save, loaded weights_only) works too
    ckpt = tmp_path / "vae.ckpt"
    torch.save({"state_dict": vae_to_ldm(other.state_dict(), 3)}, ckpt)
    assert_same_weights(load_model(folder, vae=ckpt).vae, other)
    # a diffusers vae folder works as well; a checkpoint without a VAE needs one
    other.save_pretrained(tmp_path / "vae-folder")
    assert_same_weights(load_model(single, vae=tmp_path / "vae-folder").vae, other)
    no_vae = {
        k: v for k, v in fx.ldm_state_dict(tiny["sd1"][0]).items() if not k.startswith("first_stage_model.")
    }
    path = fx.save(no_vae, tmp_path / "unet-te-only.safetensors")
    with pytest.raises(CheckpointError, match="has no VAE"):
        load_model(path)
    assert_same_weights(load_model(path, vae=vae_file).vae, other)
    diffusers_vae = fx.save(other.state_dict(), tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match="not an LDM VAE \\(diffusers layout"):
        load_model(single, vae=diffusers_vae)


def test_stored_dtype_is_kept_unless_fp32_is_asked(tmp_path, tiny):
    models = tiny["sdxl"][0]
    half = fx.write_single_file(models, tmp_path / "fp16.safetensors", dtype=torch.float16)
    m = load_model(half)
    modules = [m.unet, m.vae, *(t.model for t in m.text_encoders)]
    assert m.dtype == torch.float16
    assert {p.dtype for mod in modules for p in mod.parameters()} == {torch.float16}
    m32 = load_model(half, dtype=torch.float32)
    assert {p.dtype for mod in (m32.unet, m32.vae, *(t.model for t in m32.text_encoders))
            for p in mod.parameters()} == {torch.float32}  # fmt: skip
    # per component: an fp16 UNet with an fp32 VAE keeps both
    sd = fx.ldm_state_dict(models)
    mixed = {k: v.half() if k.startswith("model.diffusion_model.") else v for k, v in sd.items()}
    m = load_model(fx.save(mixed, tmp_path / "mixed.safetensors"))
    assert (m.unet.dtype, m.vae.dtype) == (torch.float16, torch.float32)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_weights_stay_memory_mapped(tiny):
    _, single, _ = tiny["sd2"]
    m = load_model(single)
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(single)):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            ranges.append((lo, hi))
    assert ranges, "the checkpoint is not memory-mapped"
    in_file = lambda p: any(lo <= p.data_ptr() < hi for lo, hi in ranges)  # noqa: E731
    assert in_file(m.unet.conv_in.weight)
    assert in_file(m.vae.decoder.conv_out.weight)
    assert in_file(m.text_encoders[0].model.embeddings.token_embedding.weight)
    assert in_file(m.text_encoders[0].model.encoder.layers[0].self_attn.k_proj.weight)  # a view of in_proj


def test_old_sd1_text_encoder_keys_without_text_model_level(tmp_path, tiny):
    models = tiny["sd1"][0]
    old = "cond_stage_model.transformer."
    sd = {(old + k[len(old) + len("text_model.") :] if k.startswith(old + "text_model.") else k): v
          for k, v in fx.ldm_state_dict(models).items()}  # fmt: skip
    m = load_model(fx.save(sd, tmp_path / "old.safetensors"))
    assert_same_weights(m.text_encoders[0].model, models.text_encoders[0])


def test_ckpt_with_state_dict_wrapper_loads_the_same_weights(tmp_path, tiny, loaded):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": fx.ldm_state_dict(tiny["sd1"][0]), "global_step": 470000, "epoch": 6}, path)
    m, ref = load_model(path), loaded["sd1"]
    for a, b in zip(
        (m.unet, m.vae, m.text_encoders[0].model),
        (ref.unet, ref.vae, ref.text_encoders[0].model),
        strict=True,
    ):
        assert_same_weights(a, b)


# ---- errors ---------------------------------------------------------------------------------------


def test_truncated_file_is_a_clear_error(tmp_path, tiny):
    data = tiny["sd1"][1].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: truncated: .* bytes of tensor data"):
        load_model(cut)
    cut.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="too short for a safetensors file"):
        load_model(cut)
    cut.write_bytes(b"<html>404 Not Found</html>" * 3)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(cut)


def test_unrelated_safetensors_lists_what_was_found_and_expected(tmp_path, tiny):
    lora = fx.save({f"lora_unet_down_blocks_0_attn{i}.lora_down.weight": torch.zeros(4, 8) for i in range(3)},
                   tmp_path / "style.safetensors")  # fmt: skip
    with pytest.raises(CheckpointError) as e:
        load_model(lora)
    msg = str(e.value)
    assert "found lora_unet_down_blocks_0_attn0.lora_down.* (1)" in msg
    assert "expected a Stable Diffusion checkpoint: model.diffusion_model.*" in msg
    assert "LoRA" in msg and "\n" not in msg
    vae_only = fx.write_vae_file(tiny["sd1"][0].vae, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="standalone VAE"):
        load_model(vae_only)
    with pytest.raises(CheckpointError, match=r"unsupported file type '\.gguf'"):
        (tmp_path / "m.gguf").write_bytes(b"GGUF")
        load_model(tmp_path / "m.gguf")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused_and_never_runs(tmp_path, tiny):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.ckpt"  # the real attack shape: torch.save of a state dict carrying a payload
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "x": _Payload(marker)}, zipped)
    raw = tmp_path / "evil.pt"  # a bare pickle stream
    raw.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    for path in (zipped, raw):
        with pytest.raises(CheckpointError, match="refused: the pickle wants to import or run code"):
            load_model(path)
        with pytest.raises(CheckpointError, match="refused"):
            load_state_dict(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is real: unpickled naively it runs
    assert marker.exists()
