"""The glassforge-shapes trainer: VAE, then latent cache, then text encoder + UNet jointly.

Phases (one run directory holds all of them; ``state.pt`` lets any phase resume):

1. ``vae``   — AutoencoderKL on freshly rendered images: MSE reconstruction + ``kl_weight``·KL.
2. ``cache`` — the latent scale is measured on the data and folded into the VAE (SD's 0.18215 then gives unit
   std), and the posterior means of ``cache_size`` deterministic training images are cached.
3. ``unet``  — L = E‖ε − ε_θ(x_t, t, c)‖² with SD's scaled-linear DDPM schedule, captions re-drawn each step from
   the cached scenes, ``caption_dropout`` empty captions (so CFG works), AdamW with warm-up, EMA weights.

Every random draw of step ``s`` comes from a generator seeded by (seed, phase, s), so a resumed run draws exactly
what an uninterrupted one would. Checkpoints save the full state, the EMA models in diffusers form
(``ema/unet``, ``ema/text_encoder``, ``ema/vae``), a loss-curve PNG and a sample grid.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .dataset import COLOURS, ShapesDataset, sample_caption
from .models import (
    SD_SCALE,
    build_text_encoder,
    build_unet,
    build_vae,
    encode_text,
    fold_latent_scale,
    to_pixels,
)
from .recipes import Recipe

PHASES = ("vae", "cache", "unet", "done")
DIFFUSION_FIELDS = frozenset(
    {
        "text_width",
        "text_layers",
        "prediction",
        "zero_terminal_snr",
        "unet_channels",
        "unet_layers",
        "steps",
        "batch",
        "lr",
        "warmup",
        "weight_decay",
        "caption_dropout",
        "ema_decay",
        "grad_clip",
        "checkpoint_every",
        "eval_n",
    }
)
PHASE_CODE = {"vae": 1, "cache": 2, "unet": 3, "decoder": 4}
GRID_PROMPTS = (
    "a red circle on a blue background",
    "a small yellow star at the top on a black background",
    "a large green square on the left on a white background",
    "a blue triangle at the bottom on a yellow background",
    "a white star on the right on a red background",
    "a black circle in the center on an orange background",
    "a purple square on a green background",
    "orange circle, purple background",
    "a purple star on a white background",  # held out
    "an orange triangle on a blue background",  # held out
    "a green circle at the top on a black background",  # held out
    "a large red triangle on a white background",
)


def step_generator(seed: int, phase: str, step: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, PHASE_CODE[phase], step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class Trainer:
    def __init__(
        self, recipe: Recipe, out_dir: str | os.PathLike, *, log: Callable[[str], None] | None = None
    ):
        self.r, self.out = recipe, Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self._log_file = self.out / "log.txt"
        self.extra_log = log
        torch.manual_seed(recipe.seed)
        self.vae, self.text_encoder, self.unet = (
            build_vae(recipe),
            build_text_encoder(recipe),
            build_unet(recipe),
        )
        self.ema_text, self.ema_unet = copy.deepcopy(self.text_encoder), copy.deepcopy(self.unet)
        for m in (self.ema_text, self.ema_unet):
            m.requires_grad_(False)
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
        params = [*self.text_encoder.parameters(), *self.unet.parameters()]
        self.opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.phase, self.step, self.latent_k = "vae", 0, 1.0
        self.losses: dict[str, list[float]] = {"vae": [], "unet": []}
        self.latents: Tensor | None = None
        self.elapsed = 0.0  # training seconds over all sessions
        alphas_cumprod = _sd_alphas_cumprod(recipe.zero_terminal_snr)
        self.sqrt_ac, self.sqrt_1mac = alphas_cumprod.sqrt().float(), (1 - alphas_cumprod).sqrt().float()

    # ---- bookkeeping ---------------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        with self._log_file.open("a") as f:
            f.write(line + "\n")
        if self.extra_log is not None:
            self.extra_log(line)

    def state_dict(self) -> dict:
        return {
            "phase": PHASES.index(self.phase),
            "step": self.step,
            "latent_k": self.latent_k,
            "elapsed": self.elapsed,
            "vae": self.vae.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
            "unet": self.unet.state_dict(),
            "ema_text": self.ema_text.state_dict(),
            "ema_unet": self.ema_unet.state_dict(),
            "vae_opt": self.vae_opt.state_dict(),
            "opt": self.opt.state_dict(),
            "loss_vae": torch.tensor(self.losses["vae"]),
            "loss_unet": torch.tensor(self.losses["unet"]),
        }

    def save(self) -> None:
        (self.out / "recipe.json").write_text(self.r.to_json())
        tmp = self.out / "state.pt.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.out / "state.pt")

    def load(self) -> bool:
        """Resume from ``state.pt`` if the run directory has one.

        The recipe must match except ``steps``; before the first diffusion step, the diffusion fields (text encoder,
        UNet, optimizer, ...) may differ too — the VAE and latent cache are then reused and the rest starts fresh,
        which lets several diffusion recipes be compared on one VAE (copy the run directory after its cache phase).
        """
        path = self.out / "state.pt"
        if not path.exists():
            return False
        saved = Recipe.load(self.out / "recipe.json")
        s = torch.load(path, weights_only=True)
        phase, step = PHASES[int(s["phase"])], int(s["step"])
        fresh_diffusion = phase in ("cache", "unet") and step == 0 and saved != self.r
        allowed = DIFFUSION_FIELDS if fresh_diffusion else {"steps", "eval_n", "checkpoint_every"}
        if phase == "vae":  # the VAE phase may be lengthened (or its loss re-weighted) while it runs
            allowed = allowed | {"vae_steps", "vae_checkpoint_every", "vae_object_weight"}
        differ = {f.name for f in fields(Recipe) if getattr(saved, f.name) != getattr(self.r, f.name)}
        if differ - allowed:
            raise ValueError(
                f"{self.out} holds a run of another recipe (differs in {sorted(differ - allowed)}); expected only "
                f"'steps' to change, or diffusion fields before the first diffusion step"
            )
        self.phase, self.step, self.latent_k = phase, step, float(s["latent_k"])
        self.elapsed = float(s["elapsed"])
        names = ["vae", "vae_opt"] + (
            [] if fresh_diffusion else ["text_encoder", "unet", "ema_text", "ema_unet", "opt"]
        )
        for name in names:
            getattr(self, name).load_state_dict(s[name])
        self.losses = {
            "vae": s["loss_vae"].tolist(),
            "unet": [] if fresh_diffusion else s["loss_unet"].tolist(),
        }
        if self.phase in ("unet", "done"):
            self.latents = torch.load(self.out / "latents.pt", weights_only=True)
        if (
            self.phase == "done" and self.step < self.r.steps
        ):  # more steps asked: continue the diffusion phase
            self.phase = "unet"
        self.log(
            f"resumed {self.phase} phase at step {self.step}"
            + (" with a new diffusion recipe" if fresh_diffusion else "")
        )
        return True

    # ---- phase 1: VAE ----------------------------------------------------------------------------------------

    def vae_step(self) -> float:
        r = self.r
        g = step_generator(r.seed, "vae", self.step)
        first = self.step * r.vae_batch  # fresh images every step: VAE sample indices never repeat
        ds = ShapesDataset(r.resolution, seed=r.seed + 1, length=(self.step + 1) * r.vae_batch)
        images, _, scenes = ds.batch(range(first, first + r.vae_batch))
        x = to_pixels(images)
        weight = 1 + r.vae_object_weight * object_mask(images, scenes)
        for group in self.vae_opt.param_groups:
            group["lr"] = r.vae_lr * min(1.0, (self.step + 1) / 50)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
            posterior = self.vae.encode(x).latent_dist
            recon = self.vae.decode(posterior.sample(generator=g)).sample
        rec = ((recon.float() - x).pow(2) * weight).mean() / weight.mean()
        kl = posterior.kl().float().mean() / x[0].numel()
        loss = rec + r.kl_weight * kl
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), r.grad_clip)
        self.vae_opt.step()
        return float(rec.detach())

    # ---- phase 2: latent cache -------------------------------------------------------------------------------

    def training_set(self) -> ShapesDataset:
        return ShapesDataset(self.r.resolution, seed=self.r.seed, length=self.r.cache_size)

    @torch.no_grad()
    def build_cache(self) -> None:
        ds, chunk = self.training_set(), 256
        means = []
        for start in range(0, len(ds), chunk):
            images, _, _ = ds.batch(range(start, min(start + chunk, len(ds))))
            means.append(self.vae.encode(to_pixels(images)).latent_dist.mean)
        raw = torch.cat(means)
        self.latent_k = fold_latent_scale(self.vae, float(raw.std()))
        self.latents = (raw * self.latent_k * SD_SCALE).contiguous()
        torch.save(self.latents, self.out / "latents.pt")
        self.log(
            f"cached {len(ds)} latents; raw std {float(raw.std()):.4f} → folded scale k={self.latent_k:.4f}"
        )

    # ---- phase 3: text encoder + UNet --------------------------------------------------------------------------

    def captions(self, indices: Tensor, drop: Tensor) -> list[str]:
        ds = self.training_set()
        out = []
        for j, (i, d) in enumerate(zip(indices.tolist(), drop.tolist(), strict=True)):
            if d:
                out.append("")
                continue
            scene, _ = ds.scene(i)
            out.append(sample_caption(scene, np.random.default_rng([self.r.seed, 3, self.step, j])))
        return out

    def unet_loss(self) -> Tensor:
        """The diffusion loss on this step's batch (indices, t, ε and caption dropout all drawn from the step)."""
        r = self.r
        g = step_generator(r.seed, "unet", self.step)
        idx = torch.randint(0, self.latents.shape[0], (r.batch,), generator=g)
        t = torch.randint(0, 1000, (r.batch,), generator=g)
        noise = torch.randn((r.batch, *self.latents.shape[1:]), generator=g)
        drop = torch.rand(r.batch, generator=g) < r.caption_dropout
        x0 = self.latents[idx]
        xt = self.sqrt_ac[t].view(-1, 1, 1, 1) * x0 + self.sqrt_1mac[t].view(-1, 1, 1, 1) * noise
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
            context = encode_text(self.text_encoder, self.captions(idx, drop))
            pred = self.unet(xt, t, encoder_hidden_states=context).sample
        if r.prediction == "v":  # v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0 (Salimans & Ho 2022)
            target = self.sqrt_ac[t].view(-1, 1, 1, 1) * noise - self.sqrt_1mac[t].view(-1, 1, 1, 1) * x0
        else:
            target = noise
        return (pred.float() - target).pow(2).mean()

    def unet_step(self) -> float:
        r = self.r
        for group in self.opt.param_groups:
            group["lr"] = r.lr * min(1.0, (self.step + 1) / r.warmup)
        loss = self.unet_loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g_ in self.opt.param_groups for p in g_["params"]], r.grad_clip)
        self.opt.step()
        self._ema_update()
        return float(loss.detach())

    @torch.no_grad()
    def _ema_update(self) -> None:
        decay = min(self.r.ema_decay, (1 + self.step) / (10 + self.step))
        for ema, live in ((self.ema_unet, self.unet), (self.ema_text, self.text_encoder)):
            e, p = list(ema.parameters()), list(live.parameters())
            torch._foreach_lerp_(e, p, 1 - decay)

    # ---- outputs -----------------------------------------------------------------------------------------------

    def checkpoint(self, outputs: bool = True) -> None:
        self.save()
        if not outputs:
            return
        from .plots import loss_curve, save_grid

        loss_curve(self.losses, self.out / "loss.png")
        if self.phase in ("unet", "done"):
            from .decoder import load_decoder

            if load_decoder(self.vae, self.out):  # a decoder fine-tuned alongside (decoder.py)
                self.log("using the fine-tuned decoder from decoder.pt")
            ema = self.out / "ema"
            self.ema_unet.save_pretrained(ema / "unet")
            self.ema_text.save_pretrained(ema / "text_encoder")
            self.vae.save_pretrained(ema / "vae")
            from .models import generate

            self.ema_unet.eval()
            images = generate(self.ema_unet, self.ema_text, self.vae, list(GRID_PROMPTS), seed=1, steps=20,
                              **self.r.sampling())  # fmt: skip
            save_grid(images, list(GRID_PROMPTS), self.out / "grids" / f"step{self.step:06d}.png")
            if self.r.eval_n:
                self.adherence()
        elif self.phase == "vae":
            from .models import to_uint8
            from .shapes_eval import accuracy, read_image

            with torch.no_grad():
                ds = ShapesDataset(self.r.resolution, seed=self.r.seed + 99, length=128)
                images, caps, scenes = ds.batch(range(128))
                x = to_pixels(images)
                recon = self.vae.decode(self.vae.encode(x).latent_dist.mean).sample
            mse = float((recon.clamp(-1, 1) - x).pow(2).mean())
            acc = accuracy([read_image(im) for im in to_uint8(recon).numpy()], scenes)
            self.log(
                f"vae step {self.step}: PSNR {10 * np.log10(4 / mse):.1f} dB; checker on reconstructions: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in acc.items())
            )
            pairs = torch.cat([torch.as_tensor(images[:16]), to_uint8(recon[:16])])
            save_grid(
                pairs, caps[:16] + ["(reconstruction)"] * 16, self.out / "grids" / f"vae{self.step:06d}.png"
            )

    def adherence(self) -> None:
        """Evaluate the EMA model with the checker; log the table and append a row to ``adherence.tsv``."""
        from .models import generate
        from .shapes_eval import ATTRIBUTES, evaluate

        def gen(prompts, seed):
            return generate(self.ema_unet, self.ema_text, self.vae, prompts, seed=seed, steps=20,
                            **self.r.sampling()).numpy()  # fmt: skip

        result = evaluate(gen, n=self.r.eval_n, resolution=self.r.resolution)
        self.log(f"adherence at step {self.step} ({self.elapsed / 60:.1f} min):\n{result.table()}")
        path = self.out / "adherence.tsv"
        cols = [*ATTRIBUTES, "all"]
        if not path.exists():
            path.write_text(
                "\t".join(["step", "minutes", *[f"seen_{c}" for c in cols], *[f"held_{c}" for c in cols]])
                + "\n"
            )
        row = [str(self.step), f"{self.elapsed / 60:.1f}", *[f"{result.seen[c]:.3f}" for c in cols],
               *[f"{result.held_out[c]:.3f}" for c in cols]]  # fmt: skip
        with path.open("a") as f:
            f.write("\t".join(row) + "\n")

    def run(self, *, progress: bool = True, outputs: bool = True, max_minutes: float | None = None) -> None:
        """Run (or resume) every remaining phase to the recipe's step counts.

        ``max_minutes`` stops the diffusion phase (with a checkpoint; resumable) once the run's total training
        time reaches it — for shared machines where the speed is not known in advance.

        ``outputs=False`` skips the loss curve, sample grids and EMA folders at checkpoints (state.pt is still saved).
        """
        torch.set_num_threads(self.r.threads)
        self.load()
        bar = _Progress(progress)
        while self.phase != "done":
            t0 = time.perf_counter()
            if self.phase == "vae":
                if self.step >= self.r.vae_steps:
                    self.phase, self.step = "cache", 0
                    continue
                loss = self.vae_step()
                self.losses["vae"].append(loss)
                self.step += 1
                every, total = self.r.vae_checkpoint_every, self.r.vae_steps
            elif self.phase == "cache":
                self.build_cache()
                self.phase, self.step = "unet", 0
                self.elapsed += time.perf_counter() - t0
                self.checkpoint(outputs=False)
                continue
            else:
                if self.step >= self.r.steps:
                    self.phase = "done"
                    self.save()  # the last step's checkpoint already wrote the outputs
                    break
                loss = self.unet_step()
                self.losses["unet"].append(loss)
                self.step += 1
                every, total = self.r.checkpoint_every, self.r.steps
            self.elapsed += time.perf_counter() - t0
            bar.update(self.phase, self.step, total, loss, self.elapsed)
            if self.step % 25 == 0 or self.step == total:
                recent = self.losses[self.phase][-25:]
                self.log(
                    f"{self.phase} step {self.step}/{total} loss {sum(recent) / len(recent):.5f} "
                    f"elapsed {self.elapsed / 60:.1f} min"
                )
            out_of_time = (
                max_minutes is not None and self.phase == "unet" and self.elapsed >= 60 * max_minutes
            )
            if self.step % every == 0 or self.step == total or out_of_time:
                self.checkpoint(outputs)
            if out_of_time:
                self.log(f"stopping at step {self.step}: {max_minutes} minutes of training reached")
                break
        bar.close()
        self.log(f"done: {self.elapsed / 60:.1f} min of training")


def object_mask(images: np.ndarray, scenes) -> Tensor:
    """[B, 1, H, W] 1 on pixels that differ from the background colour, grown by one pixel (both sides of edges)."""
    bg = np.array([COLOURS[s.background] for s in scenes], dtype=np.int16)[:, None, None, :]
    mask = torch.from_numpy((np.abs(images.astype(np.int16) - bg).max(axis=-1) > 8).astype(np.float32))
    return torch.nn.functional.max_pool2d(mask[:, None], 3, stride=1, padding=1)


def _sd_alphas_cumprod(zero_terminal_snr: bool = False) -> Tensor:
    from glassforge.sampling.noise_schedule import DiscreteSchedule

    return DiscreteSchedule.stable_diffusion(zero_terminal_snr=zero_terminal_snr).alphas_cumprod


class _Progress:
    """A one-line progress bar with the loss (stderr), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def update(self, phase: str, step: int, total: int, loss: float, elapsed: float) -> None:
        if not self.enabled:
            return
        width = 30
        done = int(width * step / max(total, 1))
        bar = "#" * done + "-" * (width - done)
        sys.stderr.write(f"\r{phase:4s} [{bar}] {step}/{total} loss {loss:.4f} {elapsed / 60:.1f} min")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
