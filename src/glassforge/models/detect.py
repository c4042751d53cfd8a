"""Which model a single-file checkpoint holds: family by sentinel keys, hyper-parameters by shapes,
ε- or v-prediction by markers, metadata or (SD2) a weight statistic.

Prediction, first rule that answers wins (``Detection.prediction_source`` records which):

1. the caller's override (``--prediction eps|v``);
2. marker tensors: ``v_pred`` (and ``ztsnr`` for zero-terminal-SNR training), as ComfyUI/Forge read them;
3. safetensors metadata ``modelspec.prediction_type`` (Stability's model spec);
4. an A1111-style config next to the file (``name.yaml`` with ``parameterization: "v"``);
5. SD2 without inpainting channels: ComfyUI's statistic — the standard deviation of the last output
   block's first transformer ``norm1.bias`` is above 0.09 in the 768-v models and below it in 512-base.
   (A1111 instead runs the full-size UNet once at t = 999; that needs the real SD2 shape, so it does
   not apply to arbitrary checkpoints.)
6. otherwise ε.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .architecture import ClipArch, UNetArch, VAEArch, read_clip_hf, read_clip_open, read_unet, read_vae
from .checkpoint import CheckpointError, StateDict, load_state_dict, prefix_summary
from .family import Family
from .sd1 import SD1
from .sd2 import SD2
from .sdxl import SDXL

FAMILIES: tuple[Family, ...] = (SDXL, SD2, SD1)  # checked in this order
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD2_V_STATISTIC_THRESHOLD = 0.09
V_VALUES = {"v", "v_prediction", "v-prediction", "velocity"}
EPS_VALUES = {"eps", "epsilon"}

_EXPECTED = (
    "expected a Stable Diffusion checkpoint: model.diffusion_model.* (UNet), first_stage_model.* (VAE) and "
    "cond_stage_model.* (SD1/SD2) or conditioner.embedders.* (SDXL) text encoders"
)

# (key that is present, what the file probably is)
_HINTS = (
    ("conditioner.embedders.0.model.token_embedding.weight", "an SDXL refiner, which is not supported yet"),
    ("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "an SD3 model, which is not supported"),
    ("model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "a Flux model, which is not supported"),
    ("encoder.conv_in.weight", "a standalone VAE: pass it as the VAE (--vae), not as the model"),
    (
        "conv_in.weight",
        "diffusers-format UNet weights: point at the diffusers folder (with model_index.json)",
    ),
)


@dataclass(frozen=True)
class Detection:
    family: Family
    unet: UNetArch
    vae: VAEArch | None  # None: the file has no VAE
    text_encoders: tuple[ClipArch, ...]  # in the family's order
    prediction: str  # "eps" or "v"
    prediction_source: str
    zero_terminal_snr: bool = False
    addition_time_embed_dim: int | None = None  # SDXL size/crop embedding width (256 at full size)


def _hint(keys) -> str:
    for key, what in _HINTS:
        if key in keys:
            return f" — this looks like {what}"
    if any(k.startswith(("lora_unet_", "lora_te", "lora_")) or ".lora_" in k for k in keys):
        return " — this looks like a LoRA, which is applied to a model, not loaded as one"
    return ""


def detect_family(sd: StateDict) -> Family:
    keys = sd.keys()
    if UNET_PREFIX + "input_blocks.0.0.weight" in keys:
        for family in FAMILIES:
            if family.sentinel in keys:
                return family
    raise CheckpointError(f"{sd.path.name}: found {prefix_summary(keys)}; {_EXPECTED}{_hint(keys)}")


def _yaml_parameterization(sd: StateDict) -> str | None:
    sidecar = sd.path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
        return str(config["model"]["params"].get("parameterization", "eps"))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def sd2_v_statistic(sd: StateDict, unet: UNetArch) -> float | None:
    """std of the last output block's first ``norm1.bias`` (ComfyUI's SD2 v-prediction tell)."""
    last = len(unet.channel_mult) * (unet.num_res_blocks + 1) - 1
    t = sd.tensors.get(f"{UNET_PREFIX}output_blocks.{last}.1.transformer_blocks.0.norm1.bias")
    if t is None or t.is_meta:
        return None
    return float(torch.std(t.float(), unbiased=False))


def detect_prediction(
    sd: StateDict, family: Family, unet: UNetArch, override: str | None = None
) -> tuple[str, str, bool]:
    """(prediction, how it was decided, zero terminal SNR) — see the module docstring for the order."""
    ztsnr = "ztsnr" in sd
    if override is not None:
        if override not in ("eps", "v"):
            raise ValueError(f"unknown prediction {override!r}; expected 'eps' or 'v'")
        return override, "override", ztsnr
    if "v_pred" in sd:
        return "v", "marker tensor 'v_pred'", ztsnr
    value = sd.metadata.get("modelspec.prediction_type", "").strip().lower()
    if value in V_VALUES | EPS_VALUES:
        return ("v" if value in V_VALUES else "eps"), f"metadata modelspec.prediction_type={value}", ztsnr
    value = (_yaml_parameterization(sd) or "").lower()
    if value in V_VALUES | EPS_VALUES:
        return ("v" if value in V_VALUES else "eps"), f"{sd.path.with_suffix('.yaml').name}", ztsnr
    if family.name == "sd2" and unet.in_channels == 4:
        std = sd2_v_statistic(sd, unet)
        if std is not None:
            pred = "v" if std > SD2_V_STATISTIC_THRESHOLD else "eps"
            return pred, f"SD2 weight statistic {std:.4f} {'>' if pred == 'v' else '≤'} 0.09", ztsnr
    return "eps", "default", ztsnr


def read_text_encoders(sd: StateDict, family: Family) -> tuple[ClipArch, ...]:
    archs = []
    for spec in family.text_encoders:
        part = sd.with_prefix(spec.prefix)
        if not part:
            raise CheckpointError(
                f"{sd.path.name}: the {family.label} text encoder {spec.name} ({spec.prefix}*) is missing"
            )
        reader = read_clip_hf if spec.layout == "hf" else read_clip_open
        archs.append(reader(part, spec.prefix))
    return tuple(archs)


def normalize_keys(sd: StateDict) -> StateDict:
    """Legacy key prefixes renamed to the current layout (e.g. SD1 text encoders saved without ``text_model.``)."""
    renames = [r for family in FAMILIES for r in family.key_renames]
    if not any(k.startswith(old) for k in sd.tensors for old, _ in renames):
        return sd
    tensors = {}
    for k, v in sd.tensors.items():
        for old, new in renames:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        tensors[k] = v
    return StateDict(tensors, sd.path, sd.metadata, sd.memory_mapped)


def detect_file(path, prediction: str | None = None) -> Detection:
    """Detect a checkpoint file without building any network (tensors stay memory-mapped, untouched)."""
    return detect(normalize_keys(load_state_dict(path)), prediction)


def detect(sd: StateDict, prediction: str | None = None) -> Detection:
    """Family, hyper-parameters and prediction type of a single-file checkpoint."""
    if "edm_mean" in sd or "edm_vpred.sigma_max" in sd:
        raise CheckpointError(
            f"{sd.path.name}: an EDM-parameterised model (edm_mean / edm_vpred keys, e.g. Playground v2.5, "
            "CosXL); expected a discrete-time ε/v Stable Diffusion checkpoint"
        )
    family = detect_family(sd)
    unet = read_unet(sd.with_prefix(UNET_PREFIX))
    vae_part = sd.with_prefix(VAE_PREFIX)
    vae = read_vae(vae_part, VAE_PREFIX) if vae_part else None
    texts = read_text_encoders(sd, family)
    name = sd.path.name

    widths = [t.hidden_size for t in texts]
    if unet.context_dim != sum(widths):
        raise CheckpointError(
            f"{name}: the UNet's cross-attention takes {unet.context_dim}-wide text but the {family.label} "
            f"text encoder(s) give {' + '.join(map(str, widths))}"
        )
    time_dim = None
    if family.name == "sdxl":
        pooled = texts[-1].projection_dim
        adm = unet.adm_in_channels
        if adm is None or pooled is None or (adm - pooled) <= 0 or (adm - pooled) % 6:
            raise CheckpointError(
                f"{name}: SDXL UNet label_emb takes {adm} inputs; expected the pooled text width "
                f"({pooled}) + 6 size/crop embeddings"
            )
        time_dim = (adm - pooled) // 6
    elif unet.adm_in_channels is not None:
        raise CheckpointError(
            f"{name}: a {family.label} UNet with class/ADM conditioning (label_emb; unCLIP?) is not supported"
        )
    pred, source, ztsnr = detect_prediction(sd, family, unet, prediction)
    return Detection(family, unet, vae, texts, pred, source, ztsnr, time_dim)
