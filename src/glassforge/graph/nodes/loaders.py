"""Loading a checkpoint and turning text into vectors (the seeds' TextPrompt → PromptVectorization)."""

from __future__ import annotations

from ..registry import NodeRegistry
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
        return (ConditioningValue(encoded, text, clip.clip_skip),)

    @reg.node(
        NodeSchema(
            "FreeU_V2",
            "FreeU V2",
            "model_patches",
            "FreeU v2: scales the UNet's backbone features (b1, b2) and damps the skip connections' low "
            "frequencies (s1, s2), on a clone of the model.",
            (
                Input("model", "MODEL"),
                Input("b1", "FLOAT", default=1.3, min=0.0, max=10.0, step=0.01),
                Input("b2", "FLOAT", default=1.4, min=0.0, max=10.0, step=0.01),
                Input("s1", "FLOAT", default=0.9, min=0.0, max=10.0, step=0.01),
                Input("s2", "FLOAT", default=0.2, min=0.0, max=10.0, step=0.01),
            ),
            (Output("MODEL"),),
            role="Changes how the denoiser mixes coarse and fine features, without retraining.",
        )
    )
    def freeu_v2(ctx, model, b1, b2, s1, s2):
        from ...models.freeu import FreeU

        return (ModelValue(model.managed, model.patcher.with_patch(FreeU(b1, b2, s1, s2, 2).patch())),)

    @reg.node(
        NodeSchema(
            "FreeU",
            "FreeU",
            "model_patches",
            "FreeU v1: scales the UNet's backbone features (b1, b2) and damps the skip connections' low "
            "frequencies (s1, s2), on a clone of the model.",
            (
                Input("model", "MODEL"),
                Input("b1", "FLOAT", default=1.1, min=0.0, max=10.0, step=0.01),
                Input("b2", "FLOAT", default=1.2, min=0.0, max=10.0, step=0.01),
                Input("s1", "FLOAT", default=0.9, min=0.0, max=10.0, step=0.01),
                Input("s2", "FLOAT", default=0.2, min=0.0, max=10.0, step=0.01),
            ),
            (Output("MODEL"),),
            role="Changes how the denoiser mixes coarse and fine features, without retraining.",
        )
    )
    def freeu_v1(ctx, model, b1, b2, s1, s2):
        from ...models.freeu import FreeU

        return (ModelValue(model.managed, model.patcher.with_patch(FreeU(b1, b2, s1, s2, 1).patch())),)
