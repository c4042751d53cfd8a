"""Training recipes: every hyper-parameter of a run, by name. A run directory stores its recipe as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    # data
    resolution: int = 32
    seed: int = 0
    cache_size: int = 20_000  # distinct training images whose latents are cached after the VAE phase
    # VAE (AutoencoderKL; 32 GroupNorm groups, first level ≥ 64 channels so absolute colour survives)
    vae_channels: tuple[int, ...] = (64, 64, 128)
    vae_layers: int = 1
    latent_channels: int = 4
    vae_steps: int = 500
    vae_batch: int = 32
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    vae_object_weight: float = 0.0  # extra reconstruction weight on the object and its edge (it is small)
    # text encoder (CLIPTextModel, real CLIP vocabulary) and UNet (UNet2DConditionModel, SD1 8-head attention)
    text_width: int = 64
    text_layers: int = 2
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    # diffusion phase
    steps: int = 2000
    batch: int = 64
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    # what the UNet predicts ("eps" as SD1, or "v" as SD2-v) and whether the noise schedule is rescaled to zero
    # terminal SNR (Lin et al. 2024): at t = 999 x_t is then pure noise, so the model must place the object from
    # the text alone (with SD's schedule the starting noise already hints where the object goes)
    prediction: str = "eps"
    zero_terminal_snr: bool = False
    # bookkeeping
    checkpoint_every: int = 250
    vae_checkpoint_every: int = 250
    eval_n: int = 0  # prompts checked at each diffusion checkpoint (+ half as many held-out); 0 = none
    bf16: bool = True
    threads: int = 1  # one thread: on a shared 2-core machine two OpenMP threads ran 3-7x slower

    def __post_init__(self) -> None:
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"recipe prediction {self.prediction!r}; expected 'eps' or 'v'")

    def sampling(self) -> dict:
        """How a model of this recipe is sampled (``train.models.generate``'s keyword arguments)."""
        return {"prediction": self.prediction, "zero_terminal_snr": self.zero_terminal_snr}

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.vae_channels) - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; expected some of {sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> Recipe:
        return cls.from_json(Path(path).read_text())


RECIPES: dict[str, Recipe] = {
    # the shipped model: 32×32 images, 8×8×4 latents
    "shapes": Recipe(
        vae_steps=800,
        vae_object_weight=4.0,
        cache_size=12_000,
        steps=2400,
        batch=32,
        lr=5e-4,
        ema_decay=0.998,
        checkpoint_every=500,
        vae_checkpoint_every=100,
        eval_n=48,
    ),
    # a few-minute probe of the same architecture
    "probe": Recipe(
        vae_steps=150, cache_size=4000, steps=300, checkpoint_every=100, vae_checkpoint_every=150
    ),
    # for tests: seconds on one core
    "tiny": Recipe(
        resolution=16,
        cache_size=64,
        vae_channels=(32, 32),
        vae_steps=4,
        vae_batch=4,
        text_width=32,
        text_layers=1,
        unet_channels=(32, 32),
        steps=6,
        batch=8,
        warmup=2,
        checkpoint_every=3,
        vae_checkpoint_every=2,
    ),
}


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


# the same model trained to predict v on a zero-terminal-SNR schedule (the object's place must come from the text)
RECIPES["shapes-v"] = replace(RECIPES["shapes"], prediction="v", zero_terminal_snr=True)
# a third UNet level (8×8 → 4×4 → 2×2 latents): at 2×2 each cell is a corner, so the zero padding tells the UNet
# where it is — SD's UNet has no positional encoding, and at two levels the embedded model ignored position words
RECIPES["shapes-3"] = replace(RECIPES["shapes"], unet_channels=(64, 128, 128))
