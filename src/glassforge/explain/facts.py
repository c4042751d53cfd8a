"""The numbers of the walk-through outside the sampler steps, from a trace alone.

Tokens, text embeddings (norms, a 2-D projection), the seed's noise, the σ/timestep schedule, the
pseudo-space (PCA of the latent path), the decode and the DDPM quantities (β, ᾱ, σ) of this run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .trace import Trace
from .walk import followed_elements


@dataclass
class TokenRow:
    chunk: int
    position: int
    id: int
    text: str
    weight: float
    kind: str  # bos / token / eos / padding


def token_rows(side: dict[str, Any], encoder: int = 0) -> list[TokenRow]:
    """Every id the text encoder received, chunk by chunk."""
    enc = side["encoders"][encoder]
    return [
        TokenRow(c, k, i, t, w, kind)
        for c, chunk in enumerate(enc["chunks"])
        for k, (i, t, w, kind) in enumerate(
            zip(chunk["ids"], chunk["texts"], chunk["weights"], chunk["kinds"], strict=True)
        )
    ]


def shown_rows(rows: list[TokenRow], padding_kept: int = 2) -> list[TokenRow]:
    """The rows worth showing: everything up to each chunk's EOS and the first padding rows."""
    out, pads = [], {}
    for r in rows:
        if r.kind == "padding":
            pads[r.chunk] = pads.get(r.chunk, 0) + 1
            if pads[r.chunk] > padding_kept:
                continue
        out.append(r)
    return out


def pca2(points: Tensor) -> tuple[Tensor, list[float]]:
    """Project rows of ``points`` [n, d] onto their two main directions; returns coords [n, 2] and
    the share of the variance each direction explains."""
    x = points.double().reshape(points.shape[0], -1)
    x = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(2, s.numel())
    coords = u[:, :k] * s[:k]
    if k < 2:
        coords = torch.cat([coords, torch.zeros(coords.shape[0], 2 - k, dtype=coords.dtype)], 1)
    total = float((s**2).sum()) or 1.0
    return coords, [float(v**2) / total for v in s[:2]]


def encoder_slices(trace: Trace) -> list[tuple[str, slice]]:
    """Which feature columns of the context each text encoder produced (SDXL concatenates two)."""
    encoders = trace.model.get("text_encoders") or []
    out, start = [], 0
    for enc in encoders:
        out.append((enc["name"], slice(start, start + enc["dim"])))
        start += enc["dim"]
    return out


def embedding(trace: Trace, side: str = "cond") -> dict[str, Any]:
    """The context rows of chunk 0: the matrix, per-token L2 norms and a 2-D projection."""
    ctx = trace.t(trace.prompt[side]["context"])[0].float()  # [77·chunks, D]
    rows = token_rows(trace.prompt[side])
    chunk0 = ctx[:77]
    coords, share = pca2(chunk0)
    return {
        "matrix": chunk0,
        "norms": chunk0.norm(dim=1).tolist(),
        "rows": rows[:77],
        "pca": coords.tolist(),
        "pca_share": share,
        "dim": int(ctx.shape[1]),
        "tokens": int(ctx.shape[0]),
    }


def noise(trace: Trace, n: int = 0, b: int = 0) -> dict[str, Any]:
    batch = trace.batch(n)
    eps = trace.t(batch["noise"])[b].float()
    x_t = trace.t(batch["x_T"])[b].float() if batch.get("x_T") else None
    sigma0 = float(batch["sigmas"][0])
    elements = followed_elements(tuple(eps.shape))
    return {
        "seed": batch["seeds"][b],
        "shape": list(eps.shape),
        "eps": eps,
        "mean": float(eps.mean()),
        "std": float(eps.std()),
        "min": float(eps.min()),
        "max": float(eps.max()),
        "sigma0": sigma0,
        "elements": [(e, float(eps[e]), None if x_t is None else float(x_t[e])) for e in elements],
        "x_T_matches": None if x_t is None else float((x_t - sigma0 * eps).abs().max()),
    }


def schedule_rows(trace: Trace, n: int = 0) -> list[dict[str, float]]:
    """Per step: σ_i, the timestep t_i the network sees, ᾱ = 1/(1 + σ²), √ᾱ and √(1 − ᾱ)."""
    batch = trace.batch(n)
    sigmas = [float(s) for s in batch["sigmas"]]
    ts = [float(t) for t in batch["timesteps"]] + [float("nan")] * len(sigmas)
    out = []
    for i, s in enumerate(sigmas):
        abar = 1 / (1 + s * s)
        out.append({"i": i, "sigma": s, "t": ts[i] if s > 0 else float("nan"), "abar": abar,
                    "signal": math.sqrt(abar), "noise": math.sqrt(1 - abar)})  # fmt: skip
    return out


def schedule_formula(trace: Trace, n: int = 0) -> tuple[str, str]:
    """(schedule name, its σ formula) as used by the run."""
    from ..sampling import SAMPLERS
    from ..sampling.schedules import resolve_schedule

    batch = trace.batch(n)
    try:
        info = resolve_schedule(batch["schedule"], SAMPLERS[batch["sampler"]])
    except (KeyError, LookupError):
        return batch["schedule"], ""
    return info.name, info.formula


def pseudo_space(trace: Trace, n: int = 0, b: int = 0) -> dict[str, Any]:
    """PCA over the run of the latent the network sees (x_i/√(σ_i² + 1)) and of the x0 predictions D̃_i.

    Both are on the scale of an image's latent (about unit variance), so one projection fits both.
    """
    steps = trace.steps(n)
    xs, ds = [], []
    for step in steps:
        s = float(step["sigma"])
        xs.append(trace.step_tensor(step, "x")[b].float() / math.sqrt(1 + s * s))
        g = trace.guidance(step, n)
        ds.append(
            (trace.t(g[0]["tensors"]["guided"]) if g else trace.step_tensor(step, "denoised"))[b].float()
        )
    last = steps[-1]
    s_last = float(last["sigma_next"])
    xs.append(trace.step_tensor(last, "x_next")[b].float() / math.sqrt(1 + s_last * s_last))
    coords, share = pca2(torch.stack(xs + ds))
    return {"x": coords[: len(xs)].tolist(), "x0": coords[len(xs) :].tolist(), "share": share,
            "dims": int(xs[0].numel())}  # fmt: skip


def decode(trace: Trace, n: int = 0, b: int = 0) -> dict[str, Any]:
    """Latent → pixels: the scale factor, the decoder output and the 8-bit conversion of one pixel."""
    d = trace.batch(n)["decoded"]
    z = trace.t(d["latents"])[b].float()
    px = trace.t(d["pixels"])[b].float()
    h, w = px.shape[-2:]
    y, x = h // 2, w // 2
    rgb = [float(v) for v in px[:, y, x]]
    halves = [(v + 1) / 2 for v in rgb]
    clamped = [min(1.0, max(0.0, v)) for v in halves]
    return {
        "scale_factor": float(d["scale_factor"]),
        "latent": z,
        "latent_shape": list(z.shape),
        "pixels": px,
        "pixel_shape": list(px.shape),
        "min": float(px.min()),
        "max": float(px.max()),
        "clamped_share": float(((px < -1) | (px > 1)).float().mean()),
        "pixel": (y, x),
        "rgb": rgb,
        "halves": halves,
        "clamped": clamped,
        "bytes": [int(255.0 * v) for v in clamped],
    }


def to_uint8(pixels: Tensor) -> Tensor:
    """The decoder output [3, H, W] as the saved image's bytes [H, W, 3] (A1111: truncation)."""
    x = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0)
    return (255.0 * x.permute(1, 2, 0)).numpy().astype("uint8")


def ddpm_rows(trace: Trace, n: int = 0) -> list[dict[str, float]]:
    """For each step's timestep t (rounded to the table index k): β_k, α_k = 1 − β_k, ᾱ_k and σ_k."""
    sched = trace.model.get("schedule") or {}
    if not sched.get("betas"):
        return []
    betas = trace.t(sched["betas"]).double()
    abar = trace.t(sched["alphas_cumprod"]).double()
    out = []
    for i, t in enumerate(trace.batch(n)["timesteps"]):
        k = min(len(betas) - 1, max(0, round(float(t))))
        a = float(abar[k])
        out.append({"i": i, "t": float(t), "k": k, "beta": float(betas[k]), "alpha": 1 - float(betas[k]),
                    "abar": a, "sigma": math.sqrt((1 - a) / a)})  # fmt: skip
    return out


def ddpm_curve(trace: Trace) -> tuple[list[float], list[float]]:
    """ᾱ_t over the whole training schedule t = 0 … T−1 (every 10th value)."""
    sched = trace.model.get("schedule") or {}
    if not sched.get("alphas_cumprod"):
        return [], []
    abar = trace.t(sched["alphas_cumprod"]).double()
    ks = [*range(0, len(abar), 10), len(abar) - 1]
    return [float(k) for k in ks], [float(abar[k]) for k in ks]
