"""Device and precision: chosen explicitly or by ``auto``, never probed at import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 / AMX); then bf16 beats fp32 here."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # compute dtype of the UNet and text encoders
    vae_dtype: torch.dtype

    @property
    def precision(self) -> str:
        return next(k for k, v in _DTYPES.items() if v == self.dtype)


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """``auto`` device: CUDA, then MPS, then CPU. ``auto`` precision: fp16 on CUDA/MPS; on CPU bf16 where
    the CPU has native bf16, else fp32 (the reference path). The VAE decodes in fp32 on CPU (its cost is
    small next to the UNet's and fp32 avoids colour banding) and in the compute dtype elsewhere."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this torch has no CUDA device; use --device cpu")
    if precision == "auto":
        precision = "fp16" if device in ("cuda", "mps") else ("bf16" if cpu_has_fast_bf16() else "fp32")
    dtype = _DTYPES[precision]
    vae_dtype = torch.float32 if device == "cpu" else dtype
    return Runtime(torch.device(device), dtype, vae_dtype)


def place_model(model, runtime: Runtime):
    """Put a loaded model (``LoadedModel``) on the runtime's device in its dtypes, in place, and return it:
    the UNet and text encoders in the compute dtype, the VAE in its decode dtype. Load with ``dtype=None``
    (the stored dtype, memory-mapped) so each component is converted once, from the stored weights."""
    import torch.nn as nn

    for module, dtype in (
        (model.unet, runtime.dtype),
        *((enc.model, runtime.dtype) for enc in model.text_encoders),
        (model.vae, runtime.vae_dtype),
    ):
        nn.Module.to(module, device=runtime.device, dtype=dtype)  # diffusers' .to() warns needlessly
    model.dtype = runtime.dtype
    return model
