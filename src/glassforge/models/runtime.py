"""Device and precision: chosen explicitly or by ``auto``, never probed at import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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
    the CPU has native bf16, else fp32 (the reference path). The VAE decodes in the compute dtype, except
    fp16 on the CPU (slow there; fp32). A bf16 decode is ~2.2× faster than fp32 on an AVX-512-BF16 CPU;
    it differs from the fp32 decode by < 1 8-bit level on average, ≤ 7 at worst (random-weight VAE,
    docs/benchmarks.md). ``fp32`` decodes in fp32, the reference path."""
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
    vae_dtype = torch.float32 if device == "cpu" and dtype == torch.float16 else dtype
    return Runtime(torch.device(device), dtype, vae_dtype)


def place_model(model, runtime: Runtime, *, channels_last: bool | None = None):
    """Put a loaded model (``LoadedModel``) on the runtime's device in its dtypes, in place, and return it:
    the UNet and text encoders in the compute dtype, the VAE in its decode dtype, convolution weights
    channels-last (default: on the CPU, where oneDNN's convolutions prefer it: ~3 % UNet, ~10 % VAE).

    Load with ``dtype=None`` (the stored dtype, memory-mapped) so each weight is converted once, from the
    stored bytes. Modules are converted one leaf at a time and the memory-mapped file pages of weights
    already converted are handed back (Linux), so the peak is about the converted model, not the
    converted model plus the whole file (4.8 → 2.7 GB for an fp16 SD1.5 file placed in bf16). On the CPU
    it also calls :func:`keep_freed_memory`."""
    if channels_last is None:
        channels_last = runtime.device.type == "cpu"
    if runtime.device.type == "cpu":
        keep_freed_memory()
    fmt = torch.channels_last if channels_last else torch.preserve_format
    mappings = _private_file_mappings()
    for module, dtype in (
        (model.unet, runtime.dtype),
        *((enc.model, runtime.dtype) for enc in model.text_encoders),
        (model.vae, runtime.vae_dtype),
    ):
        for sub in [*(m for m in module.modules() if not next(m.children(), None)), module]:
            old = [(t, t.data_ptr(), t.nbytes) for t in _own_tensors(sub)]
            # nn.Module.to, not diffusers' .to() (which warns about fp32 modules an SD model does not have)
            nn.Module.to(sub, device=runtime.device, dtype=dtype, memory_format=fmt)
            new = {t.data_ptr() for t in _own_tensors(sub)}
            _release([(ptr, size) for _, ptr, size in old if ptr not in new], mappings)
    model.dtype = runtime.dtype
    return model


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    tensors = [*module._parameters.values(), *module._buffers.values()]
    return [t for t in tensors if t is not None and t.device.type == "cpu"]


def _private_file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's private mappings of files (``/proc/self/maps``); [] off Linux."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    spans = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[1].endswith("p") and parts[5].startswith("/"):
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            spans.append((lo, hi))
    return spans


def _release(ranges: list[tuple[int, int]], mappings: list[tuple[int, int]]) -> None:
    """Drop the resident pages of converted weights that lie in a private file mapping (a memory-mapped
    checkpoint). Only whole pages inside each old tensor are dropped; they were only ever read, so should
    anything read them again the kernel pages them back in from the file, unchanged."""
    if not ranges or not mappings:
        return
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for ptr, size in ranges:
        lo, hi = -(-ptr // page) * page, (ptr + size) // page * page
        if hi > lo and any(a <= lo and hi <= b for a, b in mappings):
            libc.madvise(lo, hi - lo, 4)  # MADV_DONTNEED


def keep_freed_memory() -> bool:
    """Process-wide (glibc): keep freed memory for reuse instead of returning it to the system after
    every large tensor. By default glibc unmaps or trims the activations a UNet call frees, and the next
    call faults the pages back in (~80,000 page faults per SD1.5 call): with two threads that cost 25 % of
    the UNet's time at 256×256 and ~3 % at 512×512. The peak RSS is unchanged (the kept memory is reused).
    Returns False where it does not apply (no glibc)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
