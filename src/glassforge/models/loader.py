"""Loading a Stable Diffusion model — a single-file checkpoint or a diffusers folder — into the
networks their libraries maintain: diffusers' ``UNet2DConditionModel`` / ``AutoencoderKL`` and
transformers' ``CLIPTextModel`` / ``CLIPTextModelWithProjection``.

Configs are derived here from tensor shapes and family rules (single files) or read from the folder
(diffusers folders); the hub is never contacted. Modules are built on the meta device and then take
the checkpoint's tensors themselves (``load_state_dict(assign=True)``): the weights stay memory-mapped
in their stored dtype, and a dtype is converted only when asked (``dtype=torch.float32``) or for the
odd tensor stored in a different dtype than the rest of its component.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling.noise_schedule import DiscreteSchedule
from . import configs
from .architecture import read_vae
from .checkpoint import (
    CheckpointError,
    StateDict,
    dominant_dtype,
    load_state_dict,
    prefix_summary,
    read_safetensors_header,
)
from .detect import VAE_PREFIX, Detection, detect, normalize_keys
from .family import Family, TextEncoderSpec
from .sd1 import SD1
from .sd2 import SD2
from .sdxl import SDXL

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1"}
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


@dataclass
class TextEncoder:
    """A loaded text encoder and its family facts (how A1111 reads its hidden states)."""

    spec: TextEncoderSpec
    model: nn.Module  # CLIPTextModel or CLIPTextModelWithProjection
    layers_removed: int = 0  # trailing layers missing vs the original (diffusers SD2 folders drop 1)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def transformer(self) -> nn.Module:
        """The text transformer (embeddings, encoder, final_layer_norm). transformers ≥ 5.6 flattened
        ``CLIPTextModel`` (it is the transformer); ``CLIPTextModelWithProjection`` still wraps it."""
        return getattr(self.model, "text_model", self.model)

    @property
    def final_layer_norm(self) -> nn.Module:
        return self.transformer.final_layer_norm


@dataclass
class LoadedModel:
    family: str  # "sd1", "sd2", "sdxl"
    prediction: str  # "eps" or "v"
    unet: nn.Module
    vae: nn.Module
    text_encoders: list[TextEncoder]
    vae_scale_factor: float
    latent_channels: int
    schedule: DiscreteSchedule
    source: Path
    dtype: torch.dtype  # the UNet's
    prediction_source: str = "default"
    family_info: Family = SD1
    detection: Detection | None = None  # shapes read from a single file (None for diffusers folders)
    vae_source: Path | None = None  # a separate VAE that replaced the baked one
    load_seconds: dict[str, float] = field(default_factory=dict)
    default_size: int = 512  # pixels: the file's modelspec.resolution, else the family's training size

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def is_inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def vae_downscale(self) -> int:
        """Pixels per latent cell along each side (8 for every real SD VAE; tiny test VAEs differ)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def set_offline() -> None:
    """The hub must never be contacted: set the libraries' offline switches (unless the user set them)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


# ---- building modules from tensors -----------------------------------------------------------------


def _cast(state: dict[str, Tensor], dtype: torch.dtype | None) -> dict[str, Tensor]:
    """Floating tensors to ``dtype`` (default: the component's dominant stored dtype); others untouched."""
    target = dtype or dominant_dtype(state.values())
    return {k: (v.to(target) if v.is_floating_point() and v.dtype != target else v) for k, v in state.items()}


def _materialize(model: nn.Module, state: dict[str, Tensor], what: str) -> nn.Module:
    """Give a meta-initialised ``model`` the tensors of ``state`` without copying them."""
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(sorted(missing)[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(sorted(unexpected)[:3])})")
        raise CheckpointError(f"{what}: the weights do not fit the derived architecture: {'; '.join(parts)}")
    on_meta = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if on_meta:
        raise CheckpointError(f"{what}: no weights for {', '.join(on_meta[:3])}")
    return model.eval().requires_grad_(False)


def _empty(build):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def build_unet(config: dict[str, Any], state: dict[str, Tensor], dtype: torch.dtype | None):
    from diffusers import UNet2DConditionModel

    state = _cast(state, dtype)
    model = _empty(lambda: UNet2DConditionModel(**config))
    return _materialize(model, state, "UNet")


def build_vae(config: dict[str, Any], state: dict[str, Tensor], dtype: torch.dtype | None):
    from diffusers import AutoencoderKL

    state = _cast(state, dtype)
    model = _empty(lambda: AutoencoderKL(**config))
    return _materialize(model, state, "VAE")


def build_text_encoder(sd: StateDict, spec: TextEncoderSpec, arch, dtype: torch.dtype | None) -> TextEncoder:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
    config = configs.clip_config(arch, spec)
    model = _empty(lambda: cls(config))
    part = {k: v for k, v in sd.tensors.items() if k.startswith(spec.prefix)}
    state = _cast(configs.convert_clip(part, spec, model), dtype)
    return TextEncoder(spec, _materialize(model, state, f"text encoder {spec.name}"))


# ---- single-file checkpoints ---------------------------------------------------------------------


def load_vae_file(path: str | os.PathLike, family: Family, dtype: torch.dtype | None = None):
    """A separate VAE: an LDM-layout file (bare or ``first_stage_model.`` keys) or a diffusers ``vae`` folder."""
    set_offline()
    path = Path(path)
    if path.is_dir():
        return _from_pretrained_diffusers("AutoencoderKL", path, dtype)
    sd = load_state_dict(path)
    prefix = VAE_PREFIX if any(k.startswith(VAE_PREFIX) for k in sd.tensors) else ""
    part = sd.with_prefix(prefix)
    if "encoder.conv_in.weight" not in part or not any(k.startswith("encoder.down.") for k in part):
        diffusers_layout = any(k.startswith("encoder.down_blocks.") for k in part)
        layout = " (diffusers layout: pass its folder, with config.json, instead)" if diffusers_layout else ""
        raise CheckpointError(
            f"{path.name}: not an LDM VAE{layout}: found {prefix_summary(sd.keys())}; expected "
            "encoder.down.*, decoder.up.*, quant_conv.* (optionally under first_stage_model.)"
        )
    arch = read_vae(part, prefix)
    config = configs.vae_config(arch, family)
    return build_vae(config, configs.convert_vae(part, config), dtype)


def load_single_file(
    path: str | os.PathLike,
    *,
    vae: str | os.PathLike | None = None,
    prediction: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    set_offline()
    clock = {}
    t0 = time.perf_counter()
    sd = normalize_keys(load_state_dict(path))
    det = detect(sd, prediction)
    family = det.family
    clock["read+detect"] = time.perf_counter() - t0

    t = time.perf_counter()
    config = configs.unet_config(det.unet, family, det.addition_time_embed_dim)
    unet = build_unet(config, configs.convert_unet(sd.tensors, config), dtype)
    clock["unet"] = time.perf_counter() - t

    t = time.perf_counter()
    if vae is not None:
        vae_model = load_vae_file(vae, family, dtype)
    elif det.vae is not None:
        vconfig = configs.vae_config(det.vae, family)
        vae_model = build_vae(vconfig, configs.convert_vae(sd.with_prefix(VAE_PREFIX), vconfig), dtype)
    else:
        raise CheckpointError(f"{sd.path.name}: has no VAE (first_stage_model.*); pass a separate VAE file")
    clock["vae"] = time.perf_counter() - t

    t = time.perf_counter()
    texts = [
        build_text_encoder(sd, spec, arch, dtype)
        for spec, arch in zip(family.text_encoders, det.text_encoders, strict=True)
    ]
    clock["text_encoders"] = time.perf_counter() - t
    clock["total"] = time.perf_counter() - t0
    return LoadedModel(
        family=family.name,
        prediction=det.prediction,
        unet=unet,
        vae=vae_model,
        text_encoders=texts,
        vae_scale_factor=family.vae_scale_factor,
        latent_channels=int(vae_model.config.latent_channels),
        schedule=DiscreteSchedule.stable_diffusion(zero_terminal_snr=det.zero_terminal_snr),
        source=sd.path,
        dtype=unet.dtype,
        prediction_source=det.prediction_source,
        family_info=family,
        detection=det,
        vae_source=Path(vae) if vae is not None else None,
        load_seconds=clock,
        default_size=_metadata_size(sd.metadata) or family.default_size,
    )


def _metadata_size(metadata: dict[str, str]) -> int | None:
    """The training resolution from Stability's model spec (``modelspec.resolution: "WxH"``), if square."""
    w, _, h = metadata.get("modelspec.resolution", "").lower().partition("x")
    return int(w) if w.isdigit() and w == h else None


# ---- diffusers folders -----------------------------------------------------------------------------


def _folder_weights(sub: Path) -> tuple[str | None, torch.dtype | None]:
    """(variant, stored dtype) of a diffusers/transformers component folder; safetensors only."""
    files = sorted(sub.glob("*.safetensors"))
    if not files:
        raise CheckpointError(
            f"{sub}: no .safetensors weights; only safetensors are loaded from diffusers folders "
            "(pickled .bin weights are refused)"
        )
    plain = [f for f in files if f.name.count(".") == 1]
    chosen = plain[0] if plain else files[0]
    variant = (
        None if plain else chosen.name.split(".")[1].split("-")[0]
    )  # name.fp16[-0000x-of-0000y].safetensors
    header, _ = read_safetensors_header(chosen)
    dtypes = [_DTYPES.get(v["dtype"]) for k, v in header.items() if k != "__metadata__"]
    counts: dict[torch.dtype, int] = {}
    for d in dtypes:
        if d is not None:
            counts[d] = counts.get(d, 0) + 1
    return variant, (max(counts, key=counts.get) if counts else None)


def _from_pretrained_diffusers(cls_name: str, sub: Path, dtype: torch.dtype | None):
    import diffusers

    variant, stored = _folder_weights(sub)
    cls = getattr(diffusers, cls_name)
    return (
        cls.from_pretrained(
            sub, local_files_only=True, use_safetensors=True, variant=variant, torch_dtype=dtype or stored
        )
        .eval()
        .requires_grad_(False)
    )


def _from_pretrained_clip(sub: Path, with_projection: bool, dtype: torch.dtype | None):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    variant, stored = _folder_weights(sub)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    model = cls.from_pretrained(
        sub, local_files_only=True, use_safetensors=True, variant=variant, dtype=dtype or stored
    )
    return model.eval().requires_grad_(False)


def _folder_family(folder: Path, index: dict) -> Family:
    if "text_encoder_2" in index or (folder / "text_encoder_2").is_dir():
        return SDXL
    te_config = folder / "text_encoder" / "config.json"
    if not te_config.is_file():
        raise CheckpointError(
            f"{folder}: no text_encoder/config.json; expected a Stable Diffusion pipeline folder"
        )
    act = json.loads(te_config.read_text()).get("hidden_act")
    return SD2 if act == "gelu" else SD1  # OpenCLIP-H (SD2) uses gelu, OpenAI CLIP-L quick_gelu


def load_diffusers_folder(
    folder: str | os.PathLike,
    *,
    vae: str | os.PathLike | None = None,
    prediction: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    set_offline()
    folder = Path(folder)
    t0 = time.perf_counter()
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise CheckpointError(f"{folder}: no model_index.json; expected a diffusers pipeline folder")
    index = json.loads(index_file.read_text())
    family = _folder_family(folder, index)
    unet = _from_pretrained_diffusers("UNet2DConditionModel", folder / "unet", dtype)
    vae_model = (
        load_vae_file(vae, family, dtype)
        if vae is not None
        else _from_pretrained_diffusers("AutoencoderKL", folder / "vae", dtype)
    )
    texts = []
    for spec in family.text_encoders:
        model = _from_pretrained_clip(folder / spec.diffusers_subfolder, spec.with_projection, dtype)
        # diffusers' SD2 repos store 23 of OpenCLIP-H's 24 layers (the last one is never used)
        removed = 1 if family is SD2 and model.config.num_hidden_layers == 23 else 0
        texts.append(TextEncoder(spec, model, removed))

    scheduler: dict = {}
    sched_file = folder / "scheduler" / "scheduler_config.json"
    if sched_file.is_file():
        scheduler = json.loads(sched_file.read_text())
    if prediction is not None:
        if prediction not in ("eps", "v"):
            raise ValueError(f"unknown prediction {prediction!r}; expected 'eps' or 'v'")
        pred, source = prediction, "override"
    else:
        kind = scheduler.get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction"):
            raise CheckpointError(
                f"{sched_file}: prediction_type {kind!r}; expected 'epsilon' or 'v_prediction'"
            )
        pred, source = ("v" if kind == "v_prediction" else "eps"), f"scheduler_config prediction_type={kind}"
    schedule = DiscreteSchedule.from_betas(
        scheduler.get("beta_schedule", "scaled_linear"),
        int(scheduler.get("num_train_timesteps", 1000)),
        float(scheduler.get("beta_start", 0.00085)),
        float(scheduler.get("beta_end", 0.012)),
        zero_terminal_snr=bool(scheduler.get("rescale_betas_zero_snr", False)),
    )
    return LoadedModel(
        family=family.name,
        prediction=pred,
        unet=unet,
        vae=vae_model,
        text_encoders=texts,
        vae_scale_factor=family.vae_scale_factor,
        latent_channels=int(vae_model.config.latent_channels),
        schedule=schedule,
        source=folder,
        dtype=unet.dtype,
        prediction_source=source,
        family_info=family,
        vae_source=Path(vae) if vae is not None else None,
        load_seconds={"total": time.perf_counter() - t0},
        default_size=family.default_size,
    )


def load_model(
    path: str | os.PathLike,
    *,
    vae: str | os.PathLike | None = None,
    prediction: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a single-file checkpoint or a diffusers folder.

    ``vae``: a separate VAE replacing the baked one. ``prediction``: "eps"/"v" overrides detection.
    ``dtype``: None keeps the stored dtype (memory-mapped, no copy); e.g. ``torch.float32`` converts.
    """
    p = Path(path)
    if p.is_dir():
        return load_diffusers_folder(p, vae=vae, prediction=prediction, dtype=dtype)
    return load_single_file(p, vae=vae, prediction=prediction, dtype=dtype)
