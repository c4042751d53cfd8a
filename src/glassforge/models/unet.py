"""The UNet as the raw network a prediction adapter calls: ``net(x_in, t, context=..., pooled=..., time_ids=...)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .patcher import PatchedCall, UNetPatcher


def sdxl_time_ids(height: int, width: int, crop_top: int = 0, crop_left: int = 0) -> Tensor:
    """SDXL size and crop conditioning: (original h, w, crop top, left, target h, w), as A1111 sets it."""
    return torch.tensor([[height, width, crop_top, crop_left, height, width]], dtype=torch.float32)


class UNetNetwork:
    """Calls a diffusers ``UNet2DConditionModel`` in its compute dtype and returns the input's dtype.

    Rows go through the network ``micro_batch`` at a time. CPU kernels pick their blocking by batch
    size, so a fixed call size is what makes image i of a batch bit-identical to the same seed alone.
    ``images``: the batch's image count N. A call of 2N rows is CFG's layout (N cond rows, then N
    uncond rows); it goes through as N calls of the pair (cond_i, uncond_i) — exactly the call image i
    makes alone — so the network sees batch 2, which is measurably faster on the CPU than two calls of
    one row (fewer weight reorders per row; ~6 % at 512², ~30 % at 256² on 1 core). Other row counts
    go ``micro_batch`` rows at a time. ``micro_batch=None`` sends the whole batch in one call (the
    default off the CPU, where batching pays).

    ``unet``: the module, or a :class:`~glassforge.models.patcher.UNetPatcher` clone whose patches
    apply to every call (each call of this network is one patcher session).
    """

    def __init__(self, unet: nn.Module | UNetPatcher, micro_batch: int | None = 1, images: int | None = None):
        self.patcher = unet if isinstance(unet, UNetPatcher) else UNetPatcher(unet)
        self.unet, self.micro_batch, self.images = self.patcher.model, micro_batch, images

    def _groups(self, n: int) -> list[range]:
        """The row sets of each network call for a batch of ``n`` rows."""
        step = self.micro_batch or n
        if n <= step:
            return [range(n)]
        if self.images and n == 2 * self.images:  # CFG: (cond_i, uncond_i) pairs
            return [range(i, n, self.images) for i in range(self.images)]
        return [range(i, min(i + step, n)) for i in range(0, n, step)]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def __call__(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor,
        pooled: Tensor | None = None,
        time_ids: Tensor | None = None,
        concat: Tensor | None = None,
    ) -> Tensor:
        """``concat``: extra input channels (an inpainting UNet's mask + masked-image latent), appended
        to the already c_in-scaled latent as LDM's ``c_concat`` is."""
        if concat is not None:
            x = torch.cat([x, concat.to(x)], dim=1)
        n = x.shape[0]
        groups = self._groups(n)
        with self.patcher.session() as run:
            if len(groups) == 1:
                return self._call(run, x, t, context, pooled, time_ids, range(n), n)
            parts = []
            for group in groups:
                rows = slice(group.start, group.stop, group.step)
                parts.append(
                    self._call(
                        run,
                        x[rows],
                        t[rows],
                        context[rows],
                        None if pooled is None else pooled[rows],
                        None if time_ids is None else time_ids[rows],
                        group,
                        n,
                    )
                )
        out = torch.cat(parts)
        order = [r for group in groups for r in group]
        if order != list(range(n)):  # pairs came out as (c0, u0, c1, u1, …): back to the caller's order
            out = out[torch.tensor(order, device=out.device).argsort()]
        return out

    def _call(self, run: PatchedCall, x, t, context, pooled, time_ids, rows: range, batch: int) -> Tensor:
        dtype = self.dtype
        added = None
        if pooled is not None:
            added = {"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(x.device, dtype)}
        out = run(
            x.to(dtype),
            t,
            encoder_hidden_states=context.to(dtype),
            added_cond_kwargs=added,
            rows=rows,
            batch=batch,
        ).sample
        return out.to(x.dtype)
