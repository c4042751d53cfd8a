"""Decoder fine-tuning on the cached latents, alongside the diffusion phase (as SD's ft-MSE VAE decoders were).

Once the latents are cached the encoder is frozen, so the decoder (``post_quant_conv`` + ``decoder``) can keep
learning to draw the training images from exactly the latents the UNet learns to generate — in a second process,
on the second core, while the UNet trains. It writes ``decoder.pt`` in the run directory; the trainer's checkpoints
and the export pick the newest one up. Seeded per step like the trainer, and resumable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from .dataset import ShapesDataset
from .models import SD_SCALE, build_vae, to_pixels, to_uint8
from .recipes import Recipe

DECODER_FILE = "decoder.pt"


def decoder_params(vae) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}


def load_decoder(vae, run_dir: Path) -> bool:
    """Put the fine-tuned decoder of ``run_dir`` (if any) into ``vae``."""
    path = Path(run_dir) / DECODER_FILE
    if not path.exists():
        return False
    vae.load_state_dict(torch.load(path, weights_only=True)["decoder"], strict=False)
    return True


def finetune_decoder(run_dir, steps: int, *, batch: int = 32, lr: float = 5e-4, every: int = 100) -> None:
    from .shapes_eval import accuracy, read_image
    from .trainer import object_mask, step_generator

    run_dir = Path(run_dir)
    r = Recipe.load(run_dir / "recipe.json")
    torch.set_num_threads(r.threads)
    state = torch.load(run_dir / "state.pt", weights_only=True)
    if int(state["phase"]) < 2 or not (run_dir / "latents.pt").exists():
        raise ValueError(f"{run_dir} has no latent cache yet; expected a run past its cache phase")
    vae = build_vae(r)
    vae.load_state_dict(state["vae"])
    vae.requires_grad_(False)
    params = [p for n, p in vae.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    step, log_path = 0, run_dir / "decoder_log.txt"
    path = run_dir / DECODER_FILE
    if path.exists():
        saved = torch.load(path, weights_only=True)
        vae.load_state_dict(saved["decoder"], strict=False)
        opt.load_state_dict(saved["opt"])
        step = int(saved["step"])
    latents = torch.load(run_dir / "latents.pt", weights_only=True) / SD_SCALE
    ds = ShapesDataset(r.resolution, seed=r.seed, length=r.cache_size)
    check = ShapesDataset(r.resolution, seed=r.seed + 99, length=128)

    def log(msg: str) -> None:
        with log_path.open("a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    losses: list[float] = []
    while step < steps:
        g = step_generator(r.seed, "decoder", step)
        idx = torch.randint(0, latents.shape[0], (batch,), generator=g)
        images, _, scenes = ds.batch(idx.tolist())
        x = to_pixels(images)
        weight = 1 + r.vae_object_weight * object_mask(images, scenes)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 20)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
            recon = vae.decode(latents[idx]).sample
        loss = ((recon.float() - x).pow(2) * weight).mean() / weight.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, r.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % every == 0 or step == steps:
            with torch.no_grad():
                imgs, _, sc = check.batch(range(len(check)))
                xc = to_pixels(imgs)
                rc = vae.decode(vae.encode(xc).latent_dist.mean).sample
            mse = float((rc.clamp(-1, 1) - xc).pow(2).mean())
            acc = accuracy([read_image(im) for im in to_uint8(rc).numpy()], sc)
            log(
                f"decoder step {step}/{steps} loss {np.mean(losses[-every:]):.5f} PSNR {10 * np.log10(4 / mse):.1f} dB; "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in acc.items())
            )
            tmp = path.with_suffix(".tmp")
            torch.save({"decoder": decoder_params(vae), "opt": opt.state_dict(), "step": step}, tmp)
            os.replace(tmp, path)
