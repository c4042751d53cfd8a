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
    size, so a fixed call size (1 row) is what makes image i of a batch bit-identical to the same seed
    alone, whatever CFG does; on the CPU, which is compute-bound, it costs little. ``micro_batch=None``
    sends the whole batch in one call (the default off the CPU, where batching pays).

    ``unet``: the module, or a :class:`~glassforge.models.patcher.UNetPatcher` clone whose patches
    apply to every call (each call of this network is one patcher session).
    """

    def __init__(self, unet: nn.Module | UNetPatcher, micro_batch: int | None = 1):
        self.patcher = unet if isinstance(unet, UNetPatcher) else UNetPatcher(unet)
        self.unet, self.micro_batch = self.patcher.model, micro_batch

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
        step = self.micro_batch or n
        with self.patcher.session() as run:
            if n <= step:
                return self._call(run, x, t, context, pooled, time_ids, range(n), n)
            parts = []
            for i in range(0, n, step):
                rows = slice(i, i + step)
                parts.append(
                    self._call(
                        run,
                        x[rows],
                        t[rows],
                        context[rows],
                        None if pooled is None else pooled[rows],
                        None if time_ids is None else time_ids[rows],
                        range(n)[rows],
                        n,
                    )
                )
        return torch.cat(parts)

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
