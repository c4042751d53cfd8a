"""Architecture hyper-parameters read from tensor shapes of the original (LDM / OpenCLIP) key layout.

Shapes tell channel widths, layer counts, context and input/output widths; what they cannot tell
(attention heads, activations, the VAE's latent scale) is each family's fixed rule (``sd1.py`` …).
Every reader takes the tensors of one component with its prefix already removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from .checkpoint import CheckpointError


@dataclass(frozen=True)
class UNetArch:
    """An ``openaimodel.UNetModel`` as its shapes describe it (per level: 0 = full resolution)."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    transformer_depth: tuple[int, ...]  # per down level; 0 = no attention at that level
    transformer_depth_output: tuple[int, ...]  # per up level, listed from full resolution like the above
    transformer_depth_middle: int
    context_dim: int | None
    use_linear_in_transformer: bool
    adm_in_channels: int | None  # SDXL's label_emb input (pooled text + size/crop embeddings)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def attention_levels(self) -> tuple[bool, ...]:
        return tuple(d > 0 for d in self.transformer_depth)


@dataclass(frozen=True)
class VAEArch:
    """An LDM ``AutoencoderKL`` (encoder/decoder ``ch``, ``ch_mult``, ``num_res_blocks``, ``z_channels``)."""

    in_channels: int
    out_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    mid_attention: bool
    use_quant_conv: bool
    use_post_quant_conv: bool

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.ch * m for m in self.ch_mult)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class ClipArch:
    """A CLIP text transformer. ``layout``: "hf" (transformers names) or "open_clip" (OpenCLIP names)."""

    layout: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    projection_dim: int | None  # OpenCLIP ``text_projection`` output width, if stored


def _need(sd: Mapping[str, Tensor], key: str, prefix: str) -> Tensor:
    if key not in sd:
        raise CheckpointError(
            f"missing tensor {prefix + key!r}; the checkpoint is incomplete or of another layout"
        )
    return sd[key]


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _depth(sd: Mapping[str, Tensor], block: str) -> int:
    """Number of BasicTransformerBlocks in the SpatialTransformer at ``block`` (0 if none)."""
    return len(_indices(sd, re.escape(block) + r"\.transformer_blocks\.(\d+)\."))


def read_unet(sd: Mapping[str, Tensor]) -> UNetArch:
    """Hyper-parameters of a UNet from its ``model.diffusion_model.*`` tensors (prefix removed)."""
    what = "model.diffusion_model."
    conv_in = _need(sd, "input_blocks.0.0.weight", what)
    model_channels, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    out_channels = int(_need(sd, "out.2.weight", what).shape[0])

    blocks = _indices(sd, r"input_blocks\.(\d+)\.")
    levels: list[list[int]] = [[]]  # input block ids of the res blocks of each level
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in sd:
            levels.append([])
        elif f"input_blocks.{i}.0.in_layers.2.weight" in sd:
            levels[-1].append(i)
        else:
            raise CheckpointError(f"input block {i} of the UNet is neither a res block nor a downsample")
    counts = {len(level) for level in levels}
    if len(counts) != 1 or 0 in counts:
        raise CheckpointError(
            f"UNet levels have {[len(level) for level in levels]} res blocks; expected the same number "
            "(≥1) at every level"
        )
    num_res_blocks = counts.pop()

    channel_mult, depth = [], []
    for level in levels:
        width = int(sd[f"input_blocks.{level[0]}.0.out_layers.3.weight"].shape[0])
        if width % model_channels:
            raise CheckpointError(f"UNet level width {width} is not a multiple of {model_channels}")
        channel_mult.append(width // model_channels)
        ds = {_depth(sd, f"input_blocks.{i}.1") for i in level}
        if len(ds) != 1:
            raise CheckpointError(f"UNet res blocks of one level have transformer depths {sorted(ds)}")
        depth.append(ds.pop())

    n_levels = len(levels)
    out_blocks = _indices(sd, r"output_blocks\.(\d+)\.")
    if len(out_blocks) != n_levels * (num_res_blocks + 1):
        raise CheckpointError(
            f"UNet has {len(out_blocks)} output blocks; expected {n_levels * (num_res_blocks + 1)} "
            f"for {n_levels} levels of {num_res_blocks} res blocks"
        )
    depth_out = []
    for up in range(n_levels):  # up level 0 is the deepest
        ds = {
            _depth(sd, f"output_blocks.{up * (num_res_blocks + 1) + j}.1") for j in range(num_res_blocks + 1)
        }
        if len(ds) != 1:
            raise CheckpointError(f"UNet output blocks of one level have transformer depths {sorted(ds)}")
        depth_out.append(ds.pop())
    depth_mid = _depth(sd, "middle_block.1")
    if depth_mid == 0:
        raise CheckpointError(
            "UNet middle block has no transformer; expected ResBlock–SpatialTransformer–ResBlock"
        )

    context_dim = None
    use_linear = False
    for key, t in sd.items():
        if key.endswith("attn2.to_k.weight"):
            context_dim = int(t.shape[1])
        if key.endswith(".proj_in.weight"):
            use_linear = t.ndim == 2
    adm = sd.get("label_emb.0.0.weight")
    return UNetArch(
        in_channels=in_channels,
        out_channels=out_channels,
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=num_res_blocks,
        transformer_depth=tuple(depth),
        transformer_depth_output=tuple(reversed(depth_out)),
        transformer_depth_middle=depth_mid,
        context_dim=context_dim,
        use_linear_in_transformer=use_linear,
        adm_in_channels=int(adm.shape[1]) if adm is not None else None,
    )


def read_vae(sd: Mapping[str, Tensor], prefix: str = "first_stage_model.") -> VAEArch:
    """Hyper-parameters of an LDM VAE from its ``encoder.*``/``decoder.*`` tensors (``prefix`` removed)."""
    what = prefix
    conv_in = _need(sd, "encoder.conv_in.weight", what)
    ch, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    levels = _indices(sd, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"VAE encoder levels {levels}; expected encoder.down.0 … encoder.down.N")
    ch_mult, res = [], set()
    for i in levels:
        blocks = _indices(sd, rf"encoder\.down\.{i}\.block\.(\d+)\.")
        res.add(len(blocks))
        width = int(sd[f"encoder.down.{i}.block.{blocks[-1]}.conv2.weight"].shape[0])
        ch_mult.append(width // ch)
    if len(res) != 1:
        raise CheckpointError(f"VAE encoder levels have {sorted(res)} res blocks; expected one count")
    num_res_blocks = res.pop()
    dec_levels = _indices(sd, r"decoder\.up\.(\d+)\.")
    dec_res = {len(_indices(sd, rf"decoder\.up\.{i}\.block\.(\d+)\.")) for i in dec_levels}
    if len(dec_levels) != len(levels) or dec_res != {num_res_blocks + 1}:
        raise CheckpointError(
            f"VAE decoder has {len(dec_levels)} levels of {sorted(dec_res)} res blocks; expected "
            f"{len(levels)} levels of {num_res_blocks + 1} (one more than the encoder's)"
        )
    z2 = int(_need(sd, "encoder.conv_out.weight", what).shape[0])
    z = int(_need(sd, "decoder.conv_in.weight", what).shape[1])
    if z2 != 2 * z:
        raise CheckpointError(f"VAE encoder outputs {z2} channels; expected 2 × {z} (mean and log-variance)")
    post = sd.get("post_quant_conv.weight")
    if post is not None and int(post.shape[1]) != z:
        raise CheckpointError(f"VAE embed_dim {int(post.shape[1])} differs from z_channels {z}; unsupported")
    return VAEArch(
        in_channels=in_channels,
        out_channels=int(_need(sd, "decoder.conv_out.weight", what).shape[0]),
        ch=ch,
        ch_mult=tuple(ch_mult),
        num_res_blocks=num_res_blocks,
        z_channels=z,
        mid_attention="encoder.mid.attn_1.q.weight" in sd,
        use_quant_conv="quant_conv.weight" in sd,
        use_post_quant_conv=post is not None,
    )


def read_clip_hf(sd: Mapping[str, Tensor], prefix: str = "") -> ClipArch:
    """A transformers-layout CLIP text model (``text_model.*`` tensors, ``prefix`` up to it removed)."""
    what = prefix
    tok = _need(sd, "text_model.embeddings.token_embedding.weight", what)
    pos = _need(sd, "text_model.embeddings.position_embedding.weight", what)
    layers = _indices(sd, r"text_model\.encoder\.layers\.(\d+)\.")
    if not layers:
        raise CheckpointError("CLIP text encoder has no layers (text_model.encoder.layers.*)")
    proj = sd.get("text_projection.weight")
    return ClipArch(
        layout="hf",
        hidden_size=int(tok.shape[1]),
        num_layers=len(layers),
        intermediate_size=int(sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        vocab_size=int(tok.shape[0]),
        max_positions=int(pos.shape[0]),
        projection_dim=int(proj.shape[0]) if proj is not None else None,
    )


def read_clip_open(sd: Mapping[str, Tensor], prefix: str = "") -> ClipArch:
    """An OpenCLIP text tower (``token_embedding``, ``transformer.resblocks.*``, ``text_projection``)."""
    what = prefix
    tok = _need(sd, "token_embedding.weight", what)
    pos = _need(sd, "positional_embedding", what)
    layers = _indices(sd, r"transformer\.resblocks\.(\d+)\.")
    if not layers:
        raise CheckpointError("OpenCLIP text encoder has no layers (transformer.resblocks.*)")
    proj = sd.get("text_projection")
    return ClipArch(
        layout="open_clip",
        hidden_size=int(tok.shape[1]),
        num_layers=len(layers),
        intermediate_size=int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        vocab_size=int(tok.shape[0]),
        max_positions=int(pos.shape[0]),
        projection_dim=int(proj.shape[1]) if proj is not None else None,
    )
