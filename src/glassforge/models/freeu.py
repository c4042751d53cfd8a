"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net", arXiv 2309.11497) as an output-block patch.

At each decoder (output) block whose backbone features h have 4·model_channels channels (factors b1, s1)
or 2·model_channels channels (b2, s2) — the first two up stages of SD1.x, SD2.x and SDXL — before h is
concatenated with the skip features s:

* backbone: the first half of h's channels is scaled. v1 (the paper): by b. v2 (Forge's built-in
  ``sd_forge_freeu``, ComfyUI's ``FreeU_V2``): by 1 + (b − 1)·m, where m is the per-sample channel-mean
  map of h min-max normalised to [0, 1] (a constant map gives m = 0, where Forge would divide by zero).
* skip: s = Re IFFT(FFT(s)·mask), the mask being s-factor on the centred low-frequency box
  [H/2 − 1, H/2 + 1) × [W/2 − 1, W/2 + 1) of the shifted spectrum (threshold 1) and 1 elsewhere
  (computed here by small DFTs over the box's frequencies only; see :func:`fourier_filter`).

The block is chosen by the channel count of h, as in the paper's code, ComfyUI and Forge (diffusers'
``enable_freeu`` picks by up-block index instead, which differs for SD1.x/SD2.x's second up stage).
A factor of exactly 1 is skipped, so FreeU(1, 1, 1, 1) is the identity bit for bit.

Infotext: Forge writes ``freeu_enabled: True, freeu_b1: …, freeu_b2: …, freeu_s1: …, freeu_s2: …``
(extensions-builtin/sd_forge_freeu); Forge's FreeU is v2, so glassforge adds ``freeu_version: 1`` only
for v1 (a glassforge key Forge ignores).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from .patcher import BlockArgs, OutputBlockPatch

# The FreeU authors' published parameters (b1, b2, s1, s2) per base model.
PRESETS: dict[str, tuple[float, float, float, float]] = {
    "sd14": (1.3, 1.4, 0.9, 0.2),
    "sd15": (1.5, 1.6, 0.9, 0.2),
    "sd21": (1.4, 1.6, 0.9, 0.2),
    "sdxl": (1.3, 1.4, 0.9, 0.2),
}
FAMILY_PRESETS = {"sd1": "sd15", "sd2": "sd21", "sdxl": "sdxl"}
FORGE_UI_DEFAULTS = (1.01, 1.02, 0.99, 0.95)  # Forge's sliders when FreeU is switched on


def box_frequencies(n: int, threshold: int) -> list[int]:
    """The unshifted DFT indices inside the centred box [n//2 − t, n//2 + t) of an fftshifted axis of
    length n, with the reference code's slicing semantics (fftshift moves index k to (k + n//2) mod n)."""
    centre = n // 2
    return sorted({(j - centre) % n for j in range(n)[centre - threshold : centre + threshold]})


def _dft_rows(indices: list[int], n: int, device) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of exp(−2πi·k·m/n) for k in ``indices``, m in 0..n−1: [len(indices), n]."""
    k, m = torch.tensor(indices, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)
    angle = -2 * math.pi * torch.remainder(k * m, n) / n
    return angle.cos().float().to(device), angle.sin().float().to(device)


def fourier_filter(x: Tensor, threshold: int, scale: float) -> Tensor:
    """FreeU's skip filter, Re IFFT(FFT(x)·mask) over the last two axes, the mask being ``scale`` on the
    centred (fftshifted) box of ±threshold bins and 1 elsewhere.

    Only the box's few frequencies change, so this computes the same thing as x + (scale − 1)·P(x), P
    the projection onto those frequencies, by small real DFTs (2 rows per axis for threshold 1) instead
    of two full complex FFTs. Float32 inside (FFT has no bf16); the result in ``x``'s dtype.
    """
    height, width = x.shape[-2:]
    rows, cols = box_frequencies(height, threshold), box_frequencies(width, threshold)
    if not rows or not cols:
        return x
    (ch, sh), (cw, sw) = _dft_rows(rows, height, x.device), _dft_rows(cols, width, x.device)
    xf = x.float()
    a = xf @ torch.cat([cw, sw]).T  # x·F_wᵀ: real | imaginary, [..., H, 2·cols]
    ar, ai = a[..., : len(cols)], a[..., len(cols) :]
    xr, xi = ch @ ar - sh @ ai, ch @ ai + sh @ ar  # the box's spectrum F_h·x·F_wᵀ, [..., rows, cols]
    br, bi = ch.T @ xr + sh.T @ xi, ch.T @ xi - sh.T @ xr  # F_hᴴ·spectrum, [..., H, cols]
    low = torch.cat([br, bi], dim=-1) @ torch.cat([cw, sw]) / (height * width)  # Re(…·conj(F_w))
    return (xf + (scale - 1) * low).to(x.dtype)


def scale_backbone(h: Tensor, b: float, version: int) -> Tensor:
    """h with its first half of channels scaled by b (v1) or by 1 + (b − 1)·normalised mean map (v2)."""
    half = h.shape[1] // 2
    if version == 1:
        factor: Tensor | float = b
    else:
        mean = h.mean(1, keepdim=True)
        flat = mean.flatten(1)
        low = flat.min(1).values.reshape(-1, 1, 1, 1)
        high = flat.max(1).values.reshape(-1, 1, 1, 1)
        span = high - low
        normalised = torch.where(span > 0, (mean - low) / torch.where(span > 0, span, 1), 0)
        factor = (b - 1) * normalised + 1
    return torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)


@dataclass(frozen=True)
class FreeU:
    """FreeU's four factors and version; call it as an output-block patch ``(h, skip, args) → (h, skip)``."""

    b1: float
    b2: float
    s1: float
    s2: float
    version: int = 2

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"FreeU version must be 1 or 2, got {self.version}")
        for name in ("b1", "b2", "s1", "s2"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"FreeU {name} must be a finite number ≥ 0, got {value}")

    def factors(self, channels: int, model_channels: int) -> tuple[float, float] | None:
        """(b, s) for a backbone of ``channels`` channels, or None where FreeU does nothing."""
        return {4 * model_channels: (self.b1, self.s1), 2 * model_channels: (self.b2, self.s2)}.get(channels)

    def __call__(self, h: Tensor, skip: Tensor, args: BlockArgs) -> tuple[Tensor, Tensor]:
        found = self.factors(h.shape[1], args.model_channels)
        if found is None:
            return h, skip
        b, s = found
        if b != 1:
            h = scale_backbone(h, b, self.version)
        if s != 1:
            skip = fourier_filter(skip, 1, s)
        return h, skip

    def infotext(self) -> tuple[tuple[str, object], ...]:
        pairs = [("freeu_enabled", True), ("freeu_b1", self.b1), ("freeu_b2", self.b2),
                 ("freeu_s1", self.s1), ("freeu_s2", self.s2)]  # fmt: skip
        if self.version == 1:
            pairs.append(("freeu_version", 1))
        return tuple(pairs)

    def patch(self) -> OutputBlockPatch:
        """The output-block patch to put on a :class:`~glassforge.models.patcher.UNetPatcher` clone."""
        return OutputBlockPatch(self, label=f"FreeU v{self.version}", infotext=self.infotext())


@dataclass(frozen=True)
class FreeUSpec:
    """What ``--freeu`` asked for: a version and either four factors or a preset (None = the family's)."""

    version: int = 2
    values: tuple[float, float, float, float] | None = None

    def resolve(self, family: str) -> FreeU:
        """The FreeU to apply to a model of ``family`` ("sd1", "sd2", "sdxl")."""
        values = self.values
        if values is None:
            if family not in FAMILY_PRESETS:
                raise ValueError(f"no FreeU defaults for model family {family!r}; give b1,b2,s1,s2")
            values = PRESETS[FAMILY_PRESETS[family]]
        return FreeU(*values, version=self.version)


_USAGE = (
    "expected b1,b2,s1,s2 (four numbers, e.g. 1.5,1.6,0.9,0.2), a preset ("
    + ", ".join(PRESETS)
    + "), or v1/v2 for the model family's published defaults; optionally prefixed 'v1:' or 'v2:'"
)


def parse_freeu(text: str) -> FreeUSpec:
    """``--freeu`` values: ``1.5,1.6,0.9,0.2`` (v2, as Forge), ``v1:1.5,1.6,0.9,0.2``, ``v2`` / ``v1``
    (the family's published factors), ``sd15`` / ``v1:sdxl`` (a preset)."""
    spec = text.strip().lower()
    version = 2
    m = re.match(r"v([12])(?::|$)", spec)
    if m:
        version, spec = int(m.group(1)), spec[m.end() :].strip()
    if not spec:
        return FreeUSpec(version)
    if spec in PRESETS:
        return FreeUSpec(version, PRESETS[spec])
    parts = spec.split(",")
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--freeu {text!r}: {_USAGE}") from None
    if len(numbers) != 4:
        raise ValueError(f"--freeu {text!r}: {_USAGE}")
    FreeU(*numbers, version=version)  # range check with the same message as the patch
    return FreeUSpec(version, numbers)  # type: ignore[arg-type]
