"""Where UNet patches attach: the hook points of a diffusers ``UNet2DConditionModel`` in the original
(LDM) UNet's numbering, the typed arguments patches receive, and the hook functions that
:class:`~glassforge.models.patcher.UNetPatcher` registers for the duration of a session.

Blocks are numbered as Forge's ``transformer_options["block"]``: ("input", i) for conv_in, each down
layer and each downsampler; ("middle", 0); ("output", i) for each up layer (its upsampler included).
An attention site is (block, transformer index within that block, self/cross).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .patcher import PatchedCall


class PatchError(ValueError):
    """A patch that cannot be attached; the message says what is expected."""


# ---- where and when: the arguments patches receive ----------------------------------------------


@dataclass(frozen=True, order=True)
class BlockRef:
    stage: str  # "input", "middle" or "output"
    index: int

    def __str__(self) -> str:
        return f"{self.stage}.{self.index}"


@dataclass(frozen=True, eq=False)
class CallInfo:
    """The network call in progress: its timestep(s) and which rows of the caller's batch it holds
    (``UNetNetwork`` sends rows one at a time on the CPU; with CFG, cond rows come before uncond)."""

    timestep: Tensor
    rows: range
    batch: int


@dataclass(frozen=True)
class AttentionSite:
    block: BlockRef
    transformer_index: int
    kind: str  # "self" or "cross"
    name: str  # the diffusers module path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    heads: int

    @property
    def key(self) -> tuple[str, int, int]:
        """Forge's attention-replacement key (block name, block number, transformer index)."""
        return (self.block.stage, self.block.index, self.transformer_index)


@dataclass(frozen=True, eq=False)
class AttentionArgs:
    site: AttentionSite
    query_shape: tuple[int, int]  # (h, w) of the feature map the queries come from
    call: CallInfo | None
    mask: Tensor | None = None


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """softmax(q·kᵀ/√d) of one attention layer: ``probs`` [batch·heads, h·w query tokens, key tokens]
    (key tokens are the text tokens for cross-attention), float32, rows summing to 1."""

    site: AttentionSite
    query_shape: tuple[int, int]
    call: CallInfo | None
    probs: Tensor

    @property
    def block_name(self) -> str:
        return str(self.site.block)


@dataclass(frozen=True, eq=False)
class BlockArgs:
    block: BlockRef
    model_channels: int  # the UNet's base width (block_out_channels[0])
    call: CallInfo | None


# ---- the UNet's structure in LDM numbering ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UNetLayout:
    """``attention``: (site, its ``Attention`` module, the enclosing ``Transformer2DModel``);
    ``input_blocks``: (block, the module whose output is the block's output, i.e. the skip);
    ``output_blocks``: (block, its resnet, the backbone's channel count in the resnet's input)."""

    model_channels: int
    attention: tuple[tuple[AttentionSite, nn.Module, nn.Module], ...]
    input_blocks: tuple[tuple[BlockRef, nn.Module], ...]
    output_blocks: tuple[tuple[BlockRef, nn.Module, int], ...]

    @property
    def sites(self) -> tuple[AttentionSite, ...]:
        return tuple(site for site, _, _ in self.attention)


def unet_layout(model: nn.Module) -> UNetLayout:
    """Map a diffusers ``UNet2DConditionModel`` onto the original UNet's input/middle/output blocks."""
    if not all(hasattr(model, n) for n in ("conv_in", "down_blocks", "up_blocks", "config")):
        raise PatchError(
            f"cannot patch a {type(model).__name__}: expected a diffusers UNet2DConditionModel "
            "(conv_in, down_blocks, mid_block, up_blocks)"
        )
    names = {id(m): n for n, m in model.named_modules()}
    attention: list[tuple[AttentionSite, nn.Module, nn.Module]] = []

    def add_attention(block: BlockRef, t2d: nn.Module | None) -> None:
        for t, tb in enumerate(getattr(t2d, "transformer_blocks", ())):
            for attn in (getattr(tb, "attn1", None), getattr(tb, "attn2", None)):
                if attn is not None:
                    kind = "cross" if attn.is_cross_attention else "self"
                    attention.append((AttentionSite(block, t, kind, names[id(attn)], attn.heads), attn, t2d))

    inputs: list[tuple[BlockRef, nn.Module]] = [(BlockRef("input", 0), model.conv_in)]
    skips = [model.conv_in.out_channels]  # channels of each kept skip, in push order
    for down in model.down_blocks:
        t2ds = getattr(down, "attentions", None) or [None] * len(down.resnets)
        for resnet, t2d in zip(down.resnets, t2ds, strict=True):
            ref = BlockRef("input", len(inputs))
            add_attention(ref, t2d)
            inputs.append((ref, t2d if t2d is not None else resnet))
            skips.append(resnet.out_channels)
        if getattr(down, "downsamplers", None):
            inputs.append((BlockRef("input", len(inputs)), down.downsamplers[-1]))
            skips.append(down.downsamplers[-1].out_channels)
    for t2d in getattr(model.mid_block, "attentions", None) or ():
        add_attention(BlockRef("middle", 0), t2d)
    outputs: list[tuple[BlockRef, nn.Module, int]] = []
    for up in model.up_blocks:
        t2ds = getattr(up, "attentions", None) or [None] * len(up.resnets)
        for resnet, t2d in zip(up.resnets, t2ds, strict=True):
            ref = BlockRef("output", len(outputs))
            outputs.append((ref, resnet, resnet.in_channels - skips.pop()))
            add_attention(ref, t2d)
    mc = int(model.config.block_out_channels[0])
    return UNetLayout(mc, tuple(attention), tuple(inputs), tuple(outputs))


# ---- attention helpers ---------------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None
) -> Tensor:
    """The default attention op on [B, tokens, heads·dim] tensors (as diffusers' ``AttnProcessor2_0``);
    for replacement functions that modify part of the computation."""
    b, d = q.shape[0], q.shape[-1] // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        mask = mask.view(b, heads, -1, mask.shape[-1])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, heads * d).to(q.dtype)


def _prepare(attn: nn.Module, hidden: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, tuple | None]:
    """(hidden as [B, N, C], key/value source, original 4-D shape) as diffusers' processors prepare them."""
    shape = None
    if hidden.ndim == 4:
        shape = hidden.shape
        hidden = hidden.view(shape[0], shape[1], -1).transpose(1, 2)
    if attn.group_norm is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    if context is None:
        context = hidden
    elif attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    return hidden, context, shape


def attention_probabilities(attn: nn.Module, hidden: Tensor, context: Tensor | None) -> Tensor:
    """softmax(q·kᵀ·scale) of a diffusers ``Attention`` layer for these inputs, float32 [B·heads, Nq, Nk]."""
    hidden, context, _ = _prepare(attn, hidden, context)
    q, k = attn.to_q(hidden), attn.to_k(context)
    b, heads = q.shape[0], attn.heads
    q, k = (t.view(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k))
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    scores = (q.float() @ k.float().transpose(-1, -2)) * attn.scale
    return scores.softmax(dim=-1).flatten(0, 1)


class ReplacingProcessor:
    """A diffusers attention processor that hands the projected q, k, v to a replacement function."""

    def __init__(self, fn: Callable, site: AttentionSite, call: PatchedCall):
        self.fn, self.site, self.call = fn, site, call

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        if attn.norm_q is not None or attn.norm_k is not None or attn.spatial_norm is not None:
            raise PatchError(f"{self.site.name}: attention with q/k or spatial norms cannot be replaced")
        residual = hidden_states
        hidden, context, shape = _prepare(attn, hidden_states, encoder_hidden_states)
        q, k, v = attn.to_q(hidden), attn.to_k(context), attn.to_v(context)
        mask = None
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, context.shape[1], q.shape[0])
        out = self.fn(q, k, v, AttentionArgs(self.site, self.call.query_shape, self.call.info, mask))
        out = attn.to_out[1](attn.to_out[0](out.to(q.dtype)))
        if shape is not None:
            out = out.transpose(-1, -2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


# ---- hook functions (closures over one session's PatchedCall) -----------------------------------------


def _first(args: tuple, kwargs: dict, name: str) -> Tensor:
    return args[0] if args else kwargs[name]


def _with_first(args: tuple, kwargs: dict, name: str, value: Tensor) -> tuple[tuple, dict]:
    return ((value, *args[1:]), kwargs) if args else (args, {**kwargs, name: value})


def resolution_hook(call: PatchedCall):
    def pre(module, args, kwargs):
        x = _first(args, kwargs, "hidden_states")
        if x.ndim == 4:
            call.query_shape = (int(x.shape[-2]), int(x.shape[-1]))

    return pre


def input_block_hook(fns, ref: BlockRef, mc: int, call: PatchedCall):
    def post(module, args, output):
        h = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        block_args = BlockArgs(ref, mc, call.info)
        for fn in fns:
            h = fn(h, block_args)
        if isinstance(output, tuple):
            return (h, *output[1:])
        return type(output)(sample=h) if hasattr(output, "sample") else h

    return post


def output_block_hook(fns, ref: BlockRef, mc: int, channels: int, call: PatchedCall):
    def pre(module, args, kwargs):
        x = _first(args, kwargs, "input_tensor")
        h0, skip0 = x[:, :channels], x[:, channels:]
        h, skip = h0, skip0
        block_args = BlockArgs(ref, mc, call.info)
        for fn in fns:
            h, skip = fn(h, skip, block_args)
        if h is h0 and skip is skip0:
            return None  # untouched: the resnet gets the very same tensor
        joined = torch.cat([h, skip], dim=1)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            joined = joined.contiguous(memory_format=torch.channels_last)
        return _with_first(args, kwargs, "input_tensor", joined)

    return pre


def attention_input_hook(fns, site: AttentionSite, call: PatchedCall):
    def pre(module, args, kwargs):
        hidden = _first(args, kwargs, "hidden_states")
        context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        attn_args = AttentionArgs(site, call.query_shape, call.info)
        for fn in fns:
            hidden, context = fn(hidden, context, attn_args)
        args, kwargs = _with_first(args, kwargs, "hidden_states", hidden)
        if len(args) > 1:
            return (args[0], context, *args[2:]), kwargs
        return args, {**kwargs, "encoder_hidden_states": context}

    return pre


def attention_output_hook(fns, site: AttentionSite, call: PatchedCall):
    def post(module, args, output):
        attn_args = AttentionArgs(site, call.query_shape, call.info)
        for fn in fns:
            output = fn(output, attn_args)
        return output

    return post


def observer_hook(fns, site: AttentionSite, call: PatchedCall):
    def post(module, args, kwargs, output):
        hidden = _first(args, kwargs, "hidden_states")
        context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        maps = AttentionMaps(
            site, call.query_shape, call.info, attention_probabilities(module, hidden, context)
        )
        for fn in fns:
            fn(maps)

    return post
