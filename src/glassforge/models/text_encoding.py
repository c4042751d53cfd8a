"""Prompt text → conditioning tensors, as A1111/Forge compute them.

Per text encoder of the family: the prompt is tokenized into 77-token chunks (``models/tokenizer.py``);
each chunk goes through the encoder; the hidden state ``hidden_states[-max(clip_skip, minimal)]`` is
taken (then the final LayerNorm where the family does so); A1111's emphasis multiplies each token's
vector by its weight and restores the chunk's mean; chunks are concatenated along the token axis.
SDXL concatenates its two encoders along the feature axis and takes bigG's projected pooled output of
the first chunk; an empty SDXL negative prompt becomes zeros (A1111 ``force_zero_negative_prompt``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .tokenizer import ClipTokenizer, PromptChunk, TokenizedPrompt, apply_emphasis


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for one prompt (batch dimension 1)."""

    context: Tensor  # [1, 77·chunks, D] cross-attention input
    pooled: Tensor | None = None  # [1, P] SDXL's pooled text embedding
    tokens: tuple[TokenizedPrompt, ...] = ()  # per text encoder, for the explainer and token counters

    @property
    def chunks(self) -> int:
        return self.context.shape[1] // 77


def _hidden(encoder, ids: Tensor, clip_skip: int) -> tuple[Tensor, Tensor | None]:
    """The chosen hidden state [N, 77, D] and (for projection models) the projected pooled output."""
    spec, model = encoder.spec, encoder.model
    out = model(input_ids=ids, output_hidden_states=True)
    depth = max(int(clip_skip), spec.min_clip_skip) - encoder.layers_removed
    if depth < 1:
        raise ValueError(f"clip skip {clip_skip} reaches past the {encoder.name} encoder's stored layers")
    hidden = out.hidden_states[-depth]
    if spec.final_layer_norm:
        hidden = getattr(model, "text_model", model).final_layer_norm(
            hidden
        )  # transformers 5 flattened CLIPTextModel
    pooled = out.text_embeds if spec.with_projection else None
    return hidden, pooled


def _chunk_tensors(chunk: PromptChunk, device) -> tuple[Tensor, Tensor]:
    return torch.tensor([chunk.ids], device=device), torch.tensor([chunk.weights], device=device)


@torch.no_grad()
def encode_prompt(
    model,
    prompt: str,
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    is_negative: bool = False,
    tokenizers: tuple[ClipTokenizer, ...] | None = None,
) -> Conditioning:
    """Encode one prompt with every text encoder of ``model`` (a :class:`LoadedModel`)."""
    from .tokenizer import tokenizers_for_family

    tokenizers = tokenizers or tokenizers_for_family(model.family)
    contexts, pooled, tokenized = [], None, []
    for encoder, tokenizer in zip(model.text_encoders, tokenizers, strict=True):
        device = next(encoder.model.parameters()).device
        tp = tokenizer.tokenize_prompt(prompt, emphasis=emphasis)
        tokenized.append(tp)
        parts = []
        for index, chunk in enumerate(tp.chunks):
            ids, weights = _chunk_tensors(chunk, device)
            hidden, chunk_pooled = _hidden(encoder, ids, clip_skip)
            hidden = apply_emphasis(hidden.float(), weights.float(), emphasis)
            parts.append(hidden)
            if index == 0 and chunk_pooled is not None:
                pooled = chunk_pooled.float()
        contexts.append(torch.cat(parts, dim=1))
    context = torch.cat(contexts, dim=2) if len(contexts) > 1 else contexts[0]
    if model.family == "sdxl" and is_negative and prompt == "":
        context = torch.zeros_like(context)
        pooled = torch.zeros_like(pooled) if pooled is not None else None
    return Conditioning(context, pooled, tuple(tokenized))
