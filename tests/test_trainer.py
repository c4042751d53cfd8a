"""The shapes trainer on a tiny recipe: losses decrease, outputs are written, and a resumed run is the same run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from glassforge.train.models import SD_SCALE, build_vae, fold_latent_scale, to_pixels
from glassforge.train.recipes import Recipe, get_recipe
from glassforge.train.trainer import Trainer

TINY = get_recipe("tiny")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny run to the end with all outputs, plus the diffusion loss on a fixed batch before and after."""
    out = tmp_path_factory.mktemp("run")
    r = replace(TINY, steps=12, checkpoint_every=12, lr=2e-3, eval_n=2)
    trainer = Trainer(r, out)
    torch.set_num_threads(1)
    # phases 1-2 only, then the loss of the first diffusion step's batch with the untrained networks
    trainer.r = replace(r, steps=0)
    trainer.run(progress=False)
    with torch.no_grad():
        before = float(trainer.unet_loss())
    trainer.r = r
    trainer.run(progress=False)
    trainer.step, saved_step = 0, trainer.step
    with torch.no_grad():
        after = float(trainer.unet_loss())
    trainer.step = saved_step
    return trainer, before, after


def test_losses_decrease(finished):
    trainer, before, after = finished
    vae = trainer.losses["vae"]
    assert len(vae) == TINY.vae_steps and vae[-1] < vae[0]
    assert len(trainer.losses["unet"]) == 12
    assert after < before * 0.9, (before, after)


def test_outputs_written(finished):
    trainer, _, _ = finished
    out = trainer.out
    for name in ("state.pt", "recipe.json", "latents.pt", "loss.png", "log.txt", "adherence.tsv"):
        assert (out / name).is_file(), name
    assert (out / "grids" / "step000012.png").is_file()
    assert any(p.name.startswith("vae") for p in (out / "grids").iterdir())
    for sub in ("unet", "text_encoder", "vae"):
        assert (out / "ema" / sub / "config.json").is_file()
    assert Recipe.load(out / "recipe.json") == trainer.r
    assert "unet step 12/12" in (out / "log.txt").read_text()
    # the cached latents are scaled for SD's 0.18215: unit standard deviation
    assert abs(float(trainer.latents.std()) - 1.0) < 1e-3


def test_resume_is_the_same_run(tmp_path):
    torch.set_num_threads(1)
    r = replace(TINY, steps=6, checkpoint_every=3)
    whole = Trainer(r, tmp_path / "whole")
    whole.run(progress=False, outputs=False)
    first = Trainer(replace(r, steps=3), tmp_path / "split")
    first.run(progress=False, outputs=False)
    assert first.step == 3
    second = Trainer(r, tmp_path / "split")  # a new process would do exactly this
    second.run(progress=False, outputs=False)
    assert second.step == whole.step == 6
    assert second.losses["vae"] == whole.losses["vae"]
    assert second.losses["unet"] == whole.losses["unet"]  # identical, not just close
    for a, b in zip(second.ema_unet.parameters(), whole.ema_unet.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_another_recipe(tmp_path):
    Trainer(replace(TINY, vae_steps=2, steps=1), tmp_path).run(progress=False, outputs=False)
    with pytest.raises(ValueError, match=r"differs in .*vae_lr"):
        Trainer(replace(TINY, vae_steps=2, steps=1, vae_lr=0.5), tmp_path).run(progress=False, outputs=False)


def test_folding_the_latent_scale_keeps_reconstructions():
    torch.manual_seed(0)
    vae = build_vae(TINY).eval()
    x = to_pixels(torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8))
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        recon = vae.decode(mean).sample
        k = fold_latent_scale(vae, float(mean.std()))
        mean2 = vae.encode(x).latent_dist.mean
        recon2 = vae.decode(mean2).sample
    torch.testing.assert_close(mean2, mean * k, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recon2, recon, rtol=1e-4, atol=1e-4)
    assert abs(float((mean2 * SD_SCALE).std()) - 1) < 1e-4


def test_export_loads_through_the_standard_loader_as_sd1(finished, tmp_path):
    from safetensors import safe_open

    from glassforge.models.loader import load_model
    from glassforge.train import shapes_eval
    from glassforge.train.export import export_run

    trainer, _, _ = finished
    path = export_run(trainer.out, tmp_path / "shapes.safetensors", torch.float32)
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["modelspec.resolution"] == "16x16"
    for prefix in (
        "model.diffusion_model.",
        "first_stage_model.",
        "cond_stage_model.transformer.text_model.",
    ):
        assert any(k.startswith(prefix) for k in keys), prefix
    model = load_model(path)
    assert (model.family, model.prediction) == ("sd1", "eps")
    prompts = ["a red circle on a blue background", "green star, white background"]
    from_run = shapes_eval.run_dir_generator(trainer.out, steps=4)(prompts, 7)
    from_file = shapes_eval.checkpoint_generator(path, steps=4)(prompts, 7)
    assert from_file.shape == (2, 16, 16, 3)
    assert abs(from_run.astype(int) - from_file.astype(int)).max() <= 1


def test_decoder_finetune_resumes_and_is_exported(finished, tmp_path):
    from safetensors.torch import load_file

    from glassforge.train.decoder import DECODER_FILE, finetune_decoder
    from glassforge.train.export import export_run

    trainer, _, _ = finished
    finetune_decoder(trainer.out, 2, batch=4, every=2)
    finetune_decoder(trainer.out, 3, batch=4, every=2)  # resumes at step 2
    saved = torch.load(trainer.out / DECODER_FILE, weights_only=True)
    assert saved["step"] == 3
    assert "decoder step 3/3" in (trainer.out / "decoder_log.txt").read_text()
    path = export_run(trainer.out, tmp_path / "x.safetensors", torch.float32)
    exported = load_file(str(path))["first_stage_model.decoder.conv_out.weight"]
    assert torch.equal(exported, saved["decoder"]["decoder.conv_out.weight"])


def test_v_prediction_zero_snr_run_exports_markers_the_loader_reads(tmp_path):
    """A tiny v-prediction, zero-terminal-SNR run trains on the rescaled schedule, and the exported file carries the
    v_pred / ztsnr markers, so the standard loader samples it as a v model on the rescaled schedule."""
    from glassforge.models.loader import load_model
    from glassforge.sampling.noise_schedule import DiscreteSchedule
    from glassforge.train import shapes_eval
    from glassforge.train.export import export_run

    r = replace(TINY, steps=4, checkpoint_every=4, prediction="v", zero_terminal_snr=True)
    trainer = Trainer(r, tmp_path / "run")
    torch.set_num_threads(1)
    trainer.run(progress=False)
    zsnr = DiscreteSchedule.stable_diffusion(zero_terminal_snr=True).alphas_cumprod
    assert torch.allclose(trainer.sqrt_ac**2, zsnr.float()) and float(trainer.sqrt_ac[-1]) < 1e-3
    path = export_run(trainer.out, tmp_path / "v.safetensors", torch.float32)
    model = load_model(path)
    assert model.prediction == "v" and model.detection.zero_terminal_snr
    assert model.schedule.sigma_max > 1000  # σ at t = 999 of the rescaled schedule
    prompts = ["a red circle on a blue background"]
    from_run = shapes_eval.run_dir_generator(trainer.out, steps=3)(prompts, 7)
    from_file = shapes_eval.checkpoint_generator(path, steps=3)(prompts, 7)
    assert abs(from_run.astype(int) - from_file.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="prediction"):
        replace(TINY, prediction="x0")
