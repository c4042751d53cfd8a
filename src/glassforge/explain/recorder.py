"""The trace recorder: an ``on_event`` listener that keeps every number of one ``txt2img`` run.

It listens to the sampling core's events (``ModelCall``, ``Guidance``, ``SamplerStep``) and the
pipeline's (``PromptEncoded``, ``Sampled``, ``Decoded``), copies their tensors to the CPU and
writes ``trace.json`` (structure, scalars, tensor names) + ``trace.safetensors`` (the tensors). The
format is versioned and documented in ``docs/explain.md``.

Model calls and guidance results are filed under the sampler step that follows them (events arrive
as: the step's model calls, each followed by its ``Guidance``, then the ``SamplerStep``). A tensor
object seen twice (a step's ``x`` is the previous step's ``x_next``) is stored once and named twice.

With an attention collector attached (:func:`~.attention.record_attention`), each model call's
cross-attention maps are taken when its ``ModelCall`` arrives and, at the ``SamplerStep``, the cond
rows of the step's first guided evaluation are stored (``"attention"`` in ``trace.json``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor

from ..models.tokenizer import BOS_ID, EOS_ID, TokenizedPrompt
from ..pipeline_events import Decoded, PromptEncoded, Sampled
from ..sampling.events import Guidance, ModelCall, SamplerStep

TRACE_FORMAT = "glassforge-trace"
TRACE_VERSION = 1
TRACE_JSON = "trace.json"
TRACE_TENSORS = "trace.safetensors"


def number(x: float) -> float | str:
    """A JSON-safe float: non-finite values become the strings "inf", "-inf", "nan"."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _floats(t: Tensor) -> list[float | str]:
    return [number(v) for v in t.detach().reshape(-1).double().cpu().tolist()]


def token_kinds(ids: tuple[int, ...]) -> list[str]:
    """Per position of a 77-id chunk: "bos", "token", "eos" (the first EOS) or "padding"."""
    end = ids.index(EOS_ID, 1) if EOS_ID in ids[1:] else len(ids)
    return [
        "bos" if k == 0 and i == BOS_ID else "token" if k < end else "eos" if k == end else "padding"
        for k, i in enumerate(ids)
    ]


def tokens_json(tp: TokenizedPrompt) -> dict[str, Any]:
    return {
        "text": tp.text,
        "emphasis": tp.emphasis,
        "token_count": tp.token_count,
        "counter": tp.counter,
        "fragments": [[f.text, f.weight] for f in tp.fragments],
        "chunks": [
            {
                "ids": list(c.ids),
                "weights": list(c.weights),
                "texts": list(c.texts),
                "kinds": token_kinds(c.ids),
            }
            for c in tp.chunks
        ],
    }


class TraceRecorder:
    """Collects one generation's events; :meth:`save` writes the trace files.

    ``meta`` (free-form JSON: the parameters, the model) is filled by the caller, e.g. with
    :meth:`describe_model`; ``attention`` holds the per-word cross-attention maps' index when an
    attention collector is attached (:meth:`attach_attention`), else ``None``.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self._seen: dict[int, tuple[Tensor, str]] = {}  # id(original) → (original, name); keeps it alive
        self.meta: dict[str, Any] = {}
        self.prompt: dict[str, Any] | None = None
        self.batches: list[dict[str, Any]] = []
        self.attention: dict[str, Any] | None = None
        self._open = self._new_batch(0)
        self._pending_calls: list[dict[str, Any]] = []  # model calls not yet claimed by a Guidance
        self._step_calls: list[int] = []
        self._step_guidance: list[int] = []
        self._collector = None  # an attention.AttentionCollector, when attention is recorded
        self._call_maps: dict[int, Tensor] = {}  # open step's model call index → [rows, keys, H, W]

    # ------------------------------------------------------------------ events

    def __call__(self, event: Any) -> None:
        if isinstance(event, ModelCall):
            self._model_call(event)
        elif isinstance(event, Guidance):
            self._guidance(event)
        elif isinstance(event, SamplerStep):
            self._step(event)
        elif isinstance(event, PromptEncoded):
            self._prompt(event)
        elif isinstance(event, Sampled):
            self._sampled(event)
        elif isinstance(event, Decoded):
            self._decoded(event)

    def keep(self, name: str, t: Tensor | None) -> str | None:
        """Store ``t`` (a CPU copy) under ``name``; an already stored object keeps its first name."""
        if t is None:
            return None
        seen = self._seen.get(id(t))
        if seen is not None and seen[0] is t:
            return seen[1]
        if name in self.tensors:
            raise ValueError(f"tensor name {name!r} recorded twice")
        self.tensors[name] = t.detach().to("cpu", copy=True).contiguous()
        self._seen[id(t)] = (t, name)
        return name

    @staticmethod
    def _new_batch(index: int) -> dict[str, Any]:
        return {"index": index, "model_calls": [], "guidance": [], "steps": []}

    def _model_call(self, e: ModelCall) -> None:
        b = self._open
        k = len(b["model_calls"])
        base = f"b{b['index']}/call{k:04d}"
        entry = {
            "index": k,
            "step": len(b["steps"]),
            "prediction": e.prediction,
            "sigma": _floats(e.sigma),
            "timestep": _floats(e.timestep),
            "c_in": _floats(e.c_in),
            "rows": ["model"] * int(e.x.shape[0]),
            "tensors": {
                "x": self.keep(f"{base}/x", e.x),
                "raw": self.keep(f"{base}/raw", e.raw),
                "denoised": self.keep(f"{base}/denoised", e.denoised),
            },
        }
        b["model_calls"].append(entry)
        self._pending_calls.append(entry)
        if self._collector is not None:
            maps = self._collector.take(tuple(e.x.shape[-2:]))
            if maps is not None:
                self._call_maps[k] = maps
        self._step_calls.append(k)

    def _guidance(self, e: Guidance) -> None:
        b = self._open
        g = len(b["guidance"])
        base = f"b{b['index']}/guide{g:04d}"
        calls, self._pending_calls = self._pending_calls, []
        if len(calls) == 1 and e.uncond is not None:  # one batched call: cond rows, then uncond rows
            half = len(calls[0]["rows"]) // 2
            calls[0]["rows"] = ["cond"] * half + ["uncond"] * half
        else:  # separate calls (cond first), or the cond call alone when CFG = 1 skips the uncond pass
            for call, role in zip(calls, ("cond", "uncond"), strict=False):
                call["rows"] = [role] * len(call["rows"])
        b["guidance"].append(
            {
                "index": g,
                "step": len(b["steps"]),
                "calls": [c["index"] for c in calls],
                "scale": number(e.scale),
                "rescale": number(e.rescale),
                "sigma": _floats(e.sigma),
                "tensors": {
                    "cond": self.keep(f"{base}/cond", e.cond),
                    "uncond": self.keep(f"{base}/uncond", e.uncond),
                    "guided": self.keep(f"{base}/guided", e.guided),
                },
            }
        )
        self._step_guidance.append(g)

    def _step(self, e: SamplerStep) -> None:
        b = self._open
        base = f"b{b['index']}/step{len(b['steps']):04d}"
        b["steps"].append(
            {
                "i": e.i,
                "sampler": e.sampler,
                "total": e.total,
                "sigma": number(e.sigma),
                "sigma_next": number(e.sigma_next),
                "formula": e.formula,
                "terms": {k: number(v) for k, v in e.terms.items()},
                "calls": self._step_calls,
                "guidance": self._step_guidance,
                "tensors": {
                    "x": self.keep(f"{base}/x", e.x),
                    "x_next": self.keep(f"{base}/x_next", e.x_next),
                    "denoised": self.keep(f"{base}/denoised", e.denoised),
                    "noise": self.keep(f"{base}/noise", e.noise),
                },
            }
        )
        if self._collector is not None:
            self._attention_step(b)
        self._step_calls, self._step_guidance = [], []

    def _prompt(self, e: PromptEncoded) -> None:
        def side(name: str, c) -> dict[str, Any]:
            return {
                "text": c.tokens[0].text if c.tokens else "",
                "chunks": c.chunks,
                "context": self.keep(f"prompt/{name}/context", c.context),
                "pooled": self.keep(f"prompt/{name}/pooled", c.pooled),
                "encoders": [tokens_json(tp) for tp in c.tokens],
            }

        self.prompt = {
            "clip_skip": e.clip_skip,
            "cond": side("cond", e.cond),
            "uncond": side("uncond", e.uncond),
        }

    def _sampled(self, e: Sampled) -> None:
        b = self._open
        n = e.batch
        b.update(
            index=n,
            seeds=list(e.seeds),
            sampler=e.sampler,
            schedule=e.schedule,
            sigmas=_floats(e.sigmas),
            timesteps=_floats(e.timesteps),
            noise=self.keep(f"b{n}/noise", e.noise),
            x_T=b["steps"][0]["tensors"]["x"] if b["steps"] else None,
            latents=self.keep(f"b{n}/latents", e.latents),
        )

    def _decoded(self, e: Decoded) -> None:
        b = self._open
        b["decoded"] = {
            "scale_factor": number(e.scale_factor),
            "latents": self.keep(f"b{e.batch}/decoded/latents", e.latents),
            "pixels": self.keep(f"b{e.batch}/decoded/pixels", e.pixels),
        }
        self.batches.append(b)
        self._open = self._new_batch(e.batch + 1)

    # ------------------------------------------------------------------ attention

    def attach_attention(self, collector) -> None:
        """Record the maps of ``collector`` (attached to the UNet clone the run uses)."""
        self._collector = collector

    def _attention_step(self, b: dict[str, Any]) -> None:
        from .attention import AGGREGATION, cond_rows, reduce_keys, token_rows

        maps, self._call_maps = self._call_maps, {}
        if not self._step_guidance or self.prompt is None:
            return
        guidance = b["guidance"][self._step_guidance[0]]
        calls = [b["model_calls"][k] for k in guidance["calls"]]
        cond = cond_rows(calls, maps)
        if cond is None:
            return
        if self.attention is None:
            self.attention = {
                "kind": "cross",
                "half": "cond",
                "evaluation": "first",
                "aggregation": AGGREGATION,
                "layers": list(self._collector.layers),
                "keys": int(cond.shape[1]),
                "tokens": token_rows(self.prompt["cond"], int(cond.shape[1])),
                "maps": [],
            }
        att = self.attention
        if int(cond.shape[1]) != att["keys"]:
            raise ValueError(f"attention over {cond.shape[1]} keys after {att['keys']} in the same run")
        i = len(b["steps"]) - 1
        name = self.keep(f"b{b['index']}/step{i:04d}/attention", reduce_keys(cond, att["tokens"]))
        att["maps"].append({"batch": b["index"], "step": i, "call": calls[0]["index"], "tensor": name})

    # ------------------------------------------------------------------ context and output

    def describe_model(self, model, name: str | None = None) -> None:
        """Record the model's facts (family, prediction, VAE scale, encoders) and its σ table."""
        schedule = model.schedule
        self.meta["model"] = {
            "name": name or Path(str(model.source)).stem,
            "family": model.family,
            "prediction": model.prediction,
            "latent_channels": int(model.latent_channels),
            "vae_scale_factor": number(model.vae_scale_factor),
            "vae_downscale": int(2 ** (len(model.vae.config.block_out_channels) - 1)),
            "vae_parameters": int(sum(p.numel() for p in model.vae.parameters())),
            "unet_parameters": int(sum(p.numel() for p in model.unet.parameters())),
            "timestep_rule": schedule.timestep_rule,
            "text_encoders": [
                {"name": enc.name, "dim": int(enc.model.config.hidden_size)} for enc in model.text_encoders
            ],
            "schedule": {
                "betas": self.keep("model/betas", schedule.betas),
                "alphas_cumprod": self.keep("model/alphas_cumprod", schedule.alphas_cumprod),
                "sigmas": self.keep("model/sigmas", schedule.sigmas),
                "sigma_min": number(schedule.sigma_min),
                "sigma_max": number(schedule.sigma_max),
            },
        }

    def document(self) -> dict[str, Any]:
        if self._open["steps"] or self._open["model_calls"]:
            raise ValueError("the run has not finished: a batch was sampled but not decoded")
        from .. import __version__

        return {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "generator": f"glassforge {__version__}",
            **self.meta,
            "prompt": self.prompt,
            "batches": self.batches,
            "attention": self.attention,
        }

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``trace.json`` and ``trace.safetensors`` into ``folder``; returns their paths."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        doc = self.document()
        json_path, tensor_path = folder / TRACE_JSON, folder / TRACE_TENSORS
        json_path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        meta = {"format": TRACE_FORMAT, "version": str(TRACE_VERSION)}
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(tensor_path), metadata=meta)
        return json_path, tensor_path


def tensor_bytes(tensors: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())
