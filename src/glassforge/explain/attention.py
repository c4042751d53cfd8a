"""Per-word cross-attention maps: captured while recording, read back from a trace, drawn.

Capture (DAAM's aggregation, Tang et al. 2022): an :class:`AttentionCollector` is attached to a
clone of the UNet patcher as an :class:`~glassforge.models.patcher.AttentionObserver` on every
cross-attention layer. For each layer of each network call it receives softmax(q·kᵀ/√d)
[rows·heads, h·w, keys], averages the heads and sums the result per query resolution; :meth:`take`
(called by the recorder on each ``ModelCall``) upsamples each resolution's sum bilinearly to the
latent size and divides by the number of layers: the mean over layers and heads of each layer's map,
upsampled. Bilinear weights are convex, so each position's values over all keys still sum to 1.

Nothing is attached unless ``explain`` asks (:func:`record_attention`); plain generation runs the
UNet without hooks. Observing never changes the network's output.

The trace keeps, per sampler step, the cond rows (the prompt's half; the uncond rows attend to the
negative prompt) of the step's first model evaluation, for the prompt's own tokens: every key
position up to each chunk's EOS, plus one row with the sum over the padding positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..models.patcher import AttentionMaps, AttentionObserver, UNetPatcher

AGGREGATION = (
    "mean over cross-attention layers and heads of softmax(q·kᵀ/√d); each layer's map upsampled "
    "bilinearly (align_corners=False) to the latent size (DAAM)"
)
PADDING_ROW = "padding"


class AttentionError(ValueError):
    """Attention maps that do not fit the call they were filed under."""


class AttentionCollector:
    """Sums head-averaged cross-attention probabilities over the layers of one model evaluation.

    ``sites``: Forge's attention keys (block name, block number, transformer index) to observe;
    None = every cross-attention layer.
    """

    def __init__(self, sites: frozenset[tuple[str, int, int]] | None = None):
        self.sites = sites
        self.layers: list[str] = []  # the observed layers' names, in execution order (first call)
        self._sums: dict[tuple[int, int], Tensor] = {}  # query (h, w) → [batch, keys, h, w]
        self._counts: Tensor | None = None  # layers added per row

    def patch(self) -> AttentionObserver:
        return AttentionObserver(self.observe, kind="cross", sites=self.sites, label="explain: attention")

    def observe(self, maps: AttentionMaps) -> None:
        call = maps.call
        if call is None:
            raise AttentionError(f"{maps.site.name}: attention maps without a network call")
        h, w = maps.query_shape
        rows, heads = len(call.rows), maps.site.heads
        probs = maps.probs
        if probs.shape[0] != rows * heads or probs.shape[1] != h * w:
            raise AttentionError(
                f"{maps.site.name}: probabilities {tuple(probs.shape)} do not fit {rows} row(s) × {heads} "
                f"heads at {h}×{w} queries"
            )
        keys = probs.shape[-1]
        mean = probs.float().reshape(rows, heads, h * w, keys).mean(1)  # [rows, h·w, keys]
        mean = mean.transpose(1, 2).reshape(rows, keys, h, w)
        total = self._sums.get((h, w))
        if total is None:
            total = self._sums[(h, w)] = mean.new_zeros(call.batch, keys, h, w)
            if self._counts is None:
                self._counts = torch.zeros(call.batch, dtype=torch.int64)
        if total.shape[:2] != (call.batch, keys) or self._counts.shape[0] != call.batch:
            raise AttentionError(
                f"{maps.site.name}: a call of {call.batch} rows × {keys} keys inside an evaluation of "
                f"{total.shape[0]} rows × {total.shape[1]} keys (take() was not called in between)"
            )
        index = torch.tensor(list(call.rows), device=total.device)
        total.index_add_(0, index, mean)
        self._counts.index_add_(0, index.cpu(), torch.ones(rows, dtype=torch.int64))
        if maps.site.name not in self.layers:
            self.layers.append(maps.site.name)

    def take(self, latent_shape: tuple[int, int]) -> Tensor | None:
        """The aggregate since the last take, [batch rows, keys, H, W] at the latent size (float32,
        CPU); None if no layer was observed. Resets the sums."""
        sums, counts = self._sums, self._counts
        self._sums, self._counts = {}, None
        if not sums:
            return None
        if bool((counts == 0).any()):
            raise AttentionError(f"rows {(counts == 0).nonzero().flatten().tolist()} saw no attention layer")
        out = None
        for (h, w), total in sums.items():
            if (h, w) != tuple(latent_shape):
                total = F.interpolate(total, size=tuple(latent_shape), mode="bilinear", align_corners=False)
            out = total if out is None else out + total
        return (out / counts.to(out.device, out.dtype).reshape(-1, 1, 1, 1)).cpu()


def record_attention(recorder, unet: UNetPatcher) -> UNetPatcher:
    """A clone of ``unet`` whose cross-attention maps go to ``recorder`` (a ``TraceRecorder``)."""
    collector = AttentionCollector()
    recorder.attach_attention(collector)
    return unet.with_patch(collector.patch())


# ---- from all key positions to the trace's rows ------------------------------------------------------


def token_rows(cond: dict[str, Any], keys: int) -> list[dict[str, Any]]:
    """The trace's attention rows for a prompt (``trace.json``'s ``prompt.cond``) and a key count:
    each non-padding position of the first text encoder's chunks, then one row for all padding
    positions (and any keys past the prompt's chunks)."""
    rows: list[dict[str, Any]] = []
    for c, chunk in enumerate(cond["encoders"][0]["chunks"]):
        for k, (text, kind) in enumerate(zip(chunk["texts"], chunk["kinds"], strict=True)):
            if kind != "padding" and c * 77 + k < keys:
                rows.append({"row": len(rows), "position": c * 77 + k, "chunk": c, "index": k,
                             "text": text, "kind": kind})  # fmt: skip
    if len(rows) < keys:
        rows.append({"row": len(rows), "position": None, "chunk": None, "index": None,
                     "text": PADDING_ROW, "kind": PADDING_ROW})  # fmt: skip
    return rows


def reduce_keys(maps: Tensor, rows: list[dict[str, Any]]) -> Tensor:
    """[B, keys, H, W] → [B, len(rows), H, W]: the kept positions, then the sum of the others."""
    kept = [r["position"] for r in rows if r["position"] is not None]
    out = maps[:, kept]
    if len(kept) < len(rows):
        rest = torch.ones(maps.shape[1], dtype=torch.bool)
        rest[kept] = False
        out = torch.cat([out, maps[:, rest].sum(1, keepdim=True)], 1)
    return out.contiguous()


def cond_rows(calls: list[dict[str, Any]], maps: dict[int, Tensor]) -> Tensor | None:
    """The cond rows, in image order, of a guided evaluation's calls (entries of ``model_calls``
    with their roles) from each call's maps; None if a call has none."""
    parts = []
    for call in calls:
        rows = [k for k, role in enumerate(call["rows"]) if role == "cond"]
        if not rows:  # the negative prompt's own call (prompts of different chunk counts)
            continue
        m = maps.get(call["index"])
        if m is None:
            return None
        parts.append(m[rows])
    return torch.cat(parts) if parts else None


# ---- reading and drawing -----------------------------------------------------------------------------


def words(trace, with_eos: bool = True) -> list[dict[str, Any]]:
    """The rows worth showing: the prompt's tokens (and each chunk's EOS), without BOS and padding."""
    att = trace.attention
    if not att:
        return []
    kinds = ("token", "eos") if with_eos else ("token",)
    return [r for r in att["tokens"] if r["kind"] in kinds]


def label(row: dict[str, Any]) -> str:
    return "EOS" if row["kind"] == "eos" else row["text"].replace("</w>", "")


REGIONS = ("top_left", "top", "top_right", "left", "centre", "right", "bottom_left", "bottom", "bottom_right")


def where(m: Tensor) -> dict[str, Any]:
    """Where one [H, W] map peaks: the 3×3 region with the highest mean, the argmax cell, and the
    map's mean (the share of all attention this token gets)."""
    m = m.double()
    h, w = m.shape
    ys = [0, round(h / 3), round(2 * h / 3), h]
    xs = [0, round(w / 3), round(2 * w / 3), w]
    means = []
    for a in range(3):
        for b in range(3):
            cell = m[ys[a] : max(ys[a + 1], ys[a] + 1), xs[b] : max(xs[b + 1], xs[b] + 1)]
            means.append(float(cell.mean()))
    flat = int(m.argmax())
    return {"region": REGIONS[int(np.argmax(means))], "peak": (flat // w, flat % w),
            "max": float(m.max()), "share": float(m.mean())}  # fmt: skip


_ANCHORS = np.array(  # dark violet → red → orange → pale yellow (an "inferno"-like sequential map)
    [[0.00, 0.00, 0.02], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33], [0.97, 0.55, 0.04], [0.99, 1.00, 0.64]]
)


def heat_image(m: Tensor) -> Image.Image:
    """One [H, W] map as RGBA, scaled from its own minimum (transparent) to its maximum (opaque pale
    yellow): drawn over the step's picture it shows where the word's attention is strongest."""
    a = m.detach().double().cpu().numpy()
    low, top = float(a.min()), float(a.max())
    v = np.clip((a - low) / (top - low), 0, 1) if top > low else np.zeros_like(a)
    pos = v * (len(_ANCHORS) - 1)
    lo = np.minimum(pos.astype(int), len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac
    alpha = (0.9 * v)[..., None]
    rgba = np.concatenate([rgb, alpha], -1)
    return Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA")


def step_data(trace, i: int, s: dict[str, str], n: int = 0, b: int = 0) -> dict[str, Any] | None:
    """Step ``i``'s maps for the report: per shown word a heat picture (PNG data URI), its share of
    the attention and where it peaks; and the shares of BOS and padding. None without maps."""
    from .pictures import png_uri

    maps = trace.attention_maps(i, n)
    if maps is None:
        return None
    m = maps[b].float()
    out: dict[str, Any] = {"maps": [], "share": [], "info": []}
    for r in words(trace):
        w = where(m[r["row"]])
        out["maps"].append(png_uri(heat_image(m[r["row"]])))
        share, top, region = f"{100 * w['share']:.1f}%", f"{100 * w['max']:.1f}%", s["region_" + w["region"]]
        out["share"].append(share)
        out["info"].append(
            s["att_info"].format(share=share, region=region, max=top, y=w["peak"][0], x=w["peak"][1])
        )
    kinds = {"bos": 0.0, PADDING_ROW: 0.0}
    for r in trace.attention["tokens"]:
        if r["kind"] in kinds:
            kinds[r["kind"]] += float(m[r["row"]].mean())
    out["rest"] = s["att_rest"].format(
        bos=f"{100 * kinds['bos']:.1f}%", padding=f"{100 * kinds[PADDING_ROW]:.1f}%"
    )
    return out


def strongest_word(trace, n: int = 0, b: int = 0) -> int:
    """Index into :func:`words` of the prompt token with the highest peak at the last step (the
    report's first selection)."""
    shown = words(trace)
    steps = trace.attention["maps"] if trace.attention else []
    last = max((e["step"] for e in steps if e["batch"] == n), default=None)
    if last is None or not shown:
        return 0
    m = trace.attention_maps(last, n)[b]
    scores = [float(m[r["row"]].max()) if r["kind"] == "token" else -1.0 for r in shown]
    return int(np.argmax(scores))
