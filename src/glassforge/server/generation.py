"""The txt2img job as the server runs it: :func:`glassforge.txt2img.txt2img` one batch at a time, so
that an interrupt or a skip can cut a batch short between sampler steps and still return its picture.

On interrupt (A1111's behaviour): the batch being sampled is decoded from its latest predicted x0 and
returned with the batches already done; later batches do not run. On skip: the same for the current
batch, then the next batch runs. Every image is written to the output folder with its infotext as soon
as it is decoded, and the job's history row is updated then, so a server killed mid-job loses nothing
that was finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..infotext import join_params
from ..txt2img import Txt2ImgParams
from .jobs import Job, JobInterrupted

log = logging.getLogger("glassforge.server")


@dataclass(frozen=True)
class Txt2ImgSpec:
    """A checked request: params with the seeds resolved, the checkpoint name, extra infotext keys."""

    params: Txt2ImgParams
    model: str | None
    infotext_extra: tuple[tuple[str, Any], ...] = ()  # e.g. ("Eta", 0.5), appended to each parameter line


@dataclass
class Txt2ImgOutcome:
    images: list = field(default_factory=list)  # PIL images
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    pngs: list[bytes] = field(default_factory=list)  # the files' bytes (PNG with the infotext)
    params: Txt2ImgParams | None = None  # validated (size filled in)
    model_name: str = ""
    model_hash: str | None = None
    sampler: str = ""
    schedule: str = "Automatic"  # the Schedule type written to the infotext
    is_inpainting: bool = False
    interrupted: bool = False
    started: datetime = field(default_factory=datetime.now)


def batch_params(p: Txt2ImgParams, n: int) -> Txt2ImgParams:
    """Batch ``n`` of ``p`` as a run of its own: the seeds txt2img gives that batch (A1111's rules)."""
    first = p.seed if p.subseed_strength else p.seed + n * p.batch_size
    return replace(p, batch_count=1, seed=first, subseed=p.subseed + n * p.batch_size)


def make_previewer(model, width: int, height: int, mode: str, full_pixels: int):
    """latent [B, C, h, w] → PIL image of the first one: a VAE decode ("full") or the latent→RGB
    approximation scaled to the image size ("approx"); "auto" picks full for small images."""
    import torch

    from ..models.vae import decode, latent_preview, to_pil

    full = mode == "full" or (mode == "auto" and width * height <= full_pixels)

    def preview(latent):
        with torch.inference_mode():
            x = latent[:1]
            if full:
                return to_pil(decode(model.vae, x, model.vae_scale_factor))[0]
            rgb = latent_preview(x, model.family)
            return to_pil(rgb * 2 - 1)[0].resize((width, height))

    return preview


def run_txt2img(state, spec: Txt2ImgSpec, job: Job) -> Txt2ImgOutcome:
    import torch

    from ..infotext import a1111_schedule_label
    from ..pipeline_events import Decoded, Sampled
    from ..sampling.names import resolve_sampler
    from ..txt2img import txt2img, validate

    out = Txt2ImgOutcome()
    started = time.perf_counter()
    managed = state.load_model(spec.model)
    job.timings["load"] = time.perf_counter() - started
    model = managed.model
    p = validate(spec.params, model.default_size)
    info, named = resolve_sampler(p.sampler)
    schedule = named if named is not None and p.schedule.casefold() == "automatic" else p.schedule
    out.params, out.model_name, out.model_hash = p, managed.path.stem, managed.hash
    out.sampler, out.schedule = info.name, a1111_schedule_label(info.name, schedule)
    out.is_inpainting = model.in_channels == 9
    job.record.update(model=out.model_name, model_hash=out.model_hash, sampler=info.name, seed=p.seed,
                      prompt=p.prompt, negative_prompt=p.negative_prompt, steps_done=0)  # fmt: skip
    if isinstance(job.params, dict):  # the variation seed used (−1 resolved), so "again" and the graph match
        job.params["subseed"] = p.subseed
    job.previewer = make_previewer(
        model, p.width, p.height, state.config.preview, state.config.full_preview_pixels
    )
    job.progress.batches = p.batch_count
    folder = state.config.output_dir / "txt2img" / out.started.strftime("%Y-%m-%d")
    clock = {"last": 0.0, "batch": 0.0, "sampled": 0.0}

    def on_step(event) -> None:
        now = time.perf_counter()
        state.metrics.on_step(now - clock["last"])
        clock["last"] = now
        job.record["steps_done"] += 1

    listener = job.step_listener(on_step)

    def on_event(event) -> None:
        if isinstance(event, Sampled):
            clock["sampled"] = time.perf_counter()
            job.timings["sampling"] = job.timings.get("sampling", 0.0) + clock["sampled"] - clock["batch"]
        elif isinstance(event, Decoded):
            job.timings["decode"] = job.timings.get("decode", 0.0) + time.perf_counter() - clock["sampled"]
        else:
            listener(event)

    for n in range(p.batch_count):
        if job.interrupted:
            break
        job.progress.batch, job.progress.step = n, 0
        pn = batch_params(p, n)
        clock["batch"] = clock["last"] = time.perf_counter()
        stop = None
        try:
            with torch.inference_mode():
                result = txt2img(
                    model, pn, model_name=out.model_name, model_hash=out.model_hash, on_event=on_event
                )
            images, texts, seeds = result.images, result.infotexts, result.seeds
        except JobInterrupted as e:
            stop = e
            job.timings["sampling"] = job.timings.get("sampling", 0.0) + time.perf_counter() - clock["batch"]
            images, texts, seeds = _partial(model, pn, job.latest_denoised, out)
        save_started = time.perf_counter()
        for i, (image, text, seed) in enumerate(zip(images, texts, seeds, strict=True)):
            if spec.infotext_extra:
                text = f"{text}, {join_params(list(spec.infotext_extra))}"
            path = _save(image, folder, text, seed)
            out.images.append(image)
            out.infotexts.append(text)
            out.seeds.append(seed)
            out.subseeds.append(pn.subseed + i)
            out.files.append(path)
            out.pngs.append(path.read_bytes())
            job.record.update(images=list(out.files), infotexts=list(out.infotexts))
            _persist(state, job)  # the row lists every image on disk, should the server die now
        job.timings["save"] = job.timings.get("save", 0.0) + time.perf_counter() - save_started
        if stop is not None and not stop.skip:
            out.interrupted = True
            break
    return out


def _partial(model, p: Txt2ImgParams, latent, out: Txt2ImgOutcome) -> tuple[list, list[str], list[int]]:
    """Images of a batch cut short: its latest predicted x0, decoded, with the infotext txt2img writes."""
    import torch

    from ..infotext import GenerationParams
    from ..models.vae import decode, to_pil
    from ..sampling.noise import image_seeds

    if latent is None:
        return [], [], []
    with torch.inference_mode():
        images = to_pil(decode(model.vae, latent, model.vae_scale_factor))
    seeds, subseeds = image_seeds(p.seed, p.batch_size, p.subseed, p.subseed_strength)
    texts = [
        GenerationParams(
            prompt=p.prompt,
            negative_prompt=p.negative_prompt,
            steps=p.steps,
            sampler=out.sampler,
            schedule=out.schedule,
            cfg_scale=p.cfg_scale,
            seed=seeds[i],
            width=p.width,
            height=p.height,
            model_hash=out.model_hash,
            model=out.model_name,
            variation_seed=subseeds[i] if p.subseed_strength else None,
            variation_seed_strength=p.subseed_strength,
            clip_skip=p.clip_skip,
            ensd=p.eta_noise_seed_delta,
        ).to_infotext()
        for i in range(len(images))
    ]
    return images, texts, seeds


def _persist(state, job: Job) -> None:
    """Write the job's history row now (its images so far); a database hiccup does not fail the job."""
    try:
        state.history.record(job)
    except Exception:
        log.warning("could not update the history row of job %s", job.id, exc_info=True)


def _save(image, folder: Path, infotext: str, seed: int) -> Path:
    from ..pngfile import save_image

    return save_image(image, folder, infotext, seed=seed)


def load_model_job(state, name: str | None, job: Job) -> dict[str, Any]:
    """The job behind A1111's ``sd_model_checkpoint`` option: load on the worker, in queue order."""
    started = time.perf_counter()
    managed = state.load_model(name)
    job.timings["load"] = time.perf_counter() - started
    job.record.update(model=managed.path.stem, model_hash=managed.hash)
    return {"name": managed.name, "path": str(managed.path), "hash": managed.hash}
