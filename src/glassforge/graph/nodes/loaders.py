"""Loading a checkpoint and turning text into vectors (the seeds' TextPrompt → PromptVectorization)."""

from __future__ import annotations

from functools import partial

from ..registry import NodeClass, NodeRegistry
from ..schema import Input, NodeSchema, Output
from ..values import ClipValue, ConditioningValue, ModelValue, VaeValue


def register(reg: NodeRegistry) -> None:
    @reg.node(
        NodeSchema(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            "loaders",
            "Loads a Stable Diffusion checkpoint (SD1.x, SD2.x, SDXL; the embedded glassforge-shapes model "
            "first): the UNet, the text encoders and the VAE.",
            (
                Input(
                    "ckpt_name",
                    "COMBO",
                    "checkpoint file in the model folders",
                    choices=lambda env: env.checkpoint_names() if env is not None else [],
                ),
            ),
            (
                Output("MODEL", description="the denoising UNet"),
                Output("CLIP", description="the text encoders"),
                Output("VAE", description="the latent ↔ pixel converter"),
            ),
            role="Brings in the three learned parts every later step uses: the denoiser, the text encoder and "
            "the VAE.",
        )
    )
    def checkpoint_loader(ctx, ckpt_name):
        from ...models.patcher import UNetPatcher

        managed = ctx.env.models.get(ckpt_name)
        return (ModelValue(managed, UNetPatcher(managed.model.unet)), ClipValue(managed), VaeValue(managed))

    @reg.node(
        NodeSchema(
            "CLIPSetLastLayer",
            "CLIP Set Last Layer",
            "conditioning",
            "Stops the text encoder early: −1 is its last layer, −2 the one before (A1111's clip skip 2).",
            (Input("clip", "CLIP"), Input("stop_at_clip_layer", "INT", default=-1, min=-24, max=-1, step=1)),
            (Output("CLIP"),),
            role="Chooses which layer of the text encoder's stack gives the text vectors.",
        )
    )
    def clip_set_last_layer(ctx, clip, stop_at_clip_layer):
        return (ClipValue(clip.managed, clip_skip=-stop_at_clip_layer),)

    @reg.node(
        NodeSchema(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            "conditioning",
            "Encodes a prompt into the vectors the UNet reads through cross-attention. Weights use A1111's "
            "(word:1.2) syntax and emphasis (ComfyUI's own weighting differs for weighted prompts).",
            (
                Input("text", "STRING", "the prompt", multiline=True, extra={"dynamicPrompts": True}),
                Input("clip", "CLIP"),
            ),
            (Output("CONDITIONING"),),
            role="PromptVectorization: TextPrompt → BPE tokens → text-encoder vectors (77 per 75-token chunk).",
        )
    )
    def clip_text_encode(ctx, text, clip):
        from ...models.text_encoding import encode_prompt

        encoded = encode_prompt(clip.model, text, clip_skip=clip.clip_skip)
        return (ConditioningValue(encoded, text, clip.clip_skip, clip),)

    # ComfyUI's FreeU (v1) and FreeU_V2 nodes, with ComfyUI's default factors
    for version, name, label, defaults in ((2, "FreeU_V2", "FreeU V2", (1.3, 1.4, 0.9, 0.2)),
                                           (1, "FreeU", "FreeU", (1.1, 1.2, 0.9, 0.2))):  # fmt: skip
        reg.add(NodeClass(
            NodeSchema(
                name, label, "model_patches",
                f"FreeU v{version}: scales the UNet's backbone features (b1, b2) and damps the skip connections' "
                "low frequencies (s1, s2), on a clone of the model.",
                (Input("model", "MODEL"), *(Input(k, "FLOAT", default=d, min=0.0, max=10.0, step=0.01)
                                            for k, d in zip(("b1", "b2", "s1", "s2"), defaults, strict=True))),
                (Output("MODEL"),),
                role="Changes how the denoiser mixes coarse and fine features, without retraining.",
            ),
            partial(_freeu, version=version),
        ))  # fmt: skip


def _freeu(ctx, model, b1, b2, s1, s2, *, version: int):
    from ...models.freeu import FreeU

    return (ModelValue(model.managed, model.patcher.with_patch(FreeU(b1, b2, s1, s2, version).patch())),)
