"""glassforge's own node: a KSampler with the explainer's recorder attached.

It samples exactly as KSampler does (same inputs, same latent out) while the trace recorder listens to
every model call and sampler step and an attention observer rides on a clone of the model; then it
decodes with the VAE and writes ``trace.json``, ``trace.safetensors``, ``denoise.gif`` and ``index.html``
into ``<output>/explain-NNNNN/`` — the report ``glassforge explain`` writes, for any workflow.
"""

from __future__ import annotations

from dataclasses import replace

from ..registry import NodeRegistry, NodeResult
from ..schema import Input, NodeSchema, Output
from ..values import ModelValue
from .sampling import CONVENTION, KSAMPLER_INPUTS, run_sampler


def _next_folder(root):
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in root.glob("explain-*") if p.name[8:].isdigit()]
    for n in range(max(taken, default=0) + 1, max(taken, default=0) + 10_000):
        folder = root / f"explain-{n:05}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free explain folder in {root}")


def register(reg: NodeRegistry) -> None:
    @reg.node(
        NodeSchema(
            "ExplainKSampler",
            "Explain (KSampler with trace)",
            "glassforge/explain",
            "Samples as KSampler does and records every step — tokens, text vectors, noise, each model call, "
            "each sampler formula with its numbers, attention per word, the decode — into a trace and an "
            "HTML report in the output folder.",
            (
                *KSAMPLER_INPUTS,
                Input("vae", "VAE", "decodes the predicted x0 of each step for the report"),
                Input("lang", "COMBO", "language of the report", default="en", choices=("en", "ja")),
                CONVENTION,
            ),
            (Output("LATENT"),),
            output_node=True,
            role="Makes the IterativeRefinement visible: the whole path from TextPrompt to Image, step by step.",
        )
    )
    def explain_ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                         latent_image, denoise, vae, lang, convention="comfyui"):  # fmt: skip
        from ...explain.attention import record_attention
        from ...explain.recorder import TraceRecorder
        from ...explain.report import write_report
        from ...explain.trace import from_recorder
        from ...models.vae import decode
        from ...pipeline_events import Decoded, PromptEncoded, Sampled

        recorder = TraceRecorder()
        recorder.describe_model(model.model, model.managed.path.stem)
        observed = ModelValue(model.managed, record_attention(recorder, model.patcher))
        recorder(PromptEncoded(positive.encoded, negative.encoded, positive.clip_skip))
        forward = ctx.emit

        def both(event) -> None:
            recorder(event)
            forward(event)

        out, _, result = run_sampler(
            replace(ctx, emit=both), observed, positive, negative, latent_image, sampler=sampler_name, cfg=cfg,
            seed=seed, convention=convention, scheduler=scheduler, steps=steps, denoise=denoise,
        )  # fmt: skip
        recorder(Sampled.of(0, result, model.model.schedule))
        m = vae.model
        recorder(Decoded(0, out.samples, m.vae_scale_factor, decode(m.vae, out.samples, m.vae_scale_factor)))
        recorder.meta["params"] = {k: v for k, v in out.params.items() if k != "extra"}
        folder = _next_folder(ctx.env.output_dir)
        recorder.save(folder)
        written = write_report(from_recorder(recorder), model.model, folder, lang=lang)
        ui = {
            "explain": [{"folder": str(folder), "report": str(written["html"]), "gif": str(written["gif"])}]
        }
        return NodeResult((out,), ui)
