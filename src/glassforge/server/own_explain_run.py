"""Explain jobs, the running part: txt2img with the explainer's recorder listening (per-word
cross-attention maps too), the recording kept in memory while the job runs, and the files written at
its end into ``<data>/explain/<job id>/``: ``image-<k>.png``, ``trace.json``, ``trace.safetensors``,
``denoise.gif``, ``index.html`` (English) and ``index.ja.html`` (Japanese) — what ``glassforge explain``
writes. The routes that read it all: :mod:`.own_explain`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from .jobs import FINISHED, JobInterrupted
from .state import ApiError, ServerState

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
REPORTS = {"en": "index.html", "ja": "index.ja.html"}

log = logging.getLogger("glassforge.server")


@dataclass
class Live:
    """An explain job's recorder while it runs (and after an interrupt, when no trace was written)."""

    recorder: Any  # TraceRecorder
    model: Any  # the LoadedModel, for pictures of latents
    steps: list[tuple[int, int]] = field(default_factory=list)  # (batch, i) of each step fully recorded

    def count(self, n: int) -> int:
        return sum(1 for batch, _ in list(self.steps) if batch == n)

    def trace(self):
        """The recording so far as a :class:`~glassforge.explain.trace.Trace` (the open batch last)."""
        from ..explain.trace import Trace

        rec = self.recorder
        batches = list(rec.batches)
        current = rec._open  # the batch being sampled (the recorder's own bookkeeping; read only)
        if current["steps"] and (not batches or batches[-1] is not current):
            batches.append(current)
        doc = {**rec.meta, "prompt": rec.prompt, "batches": batches, "attention": rec.attention}
        return Trace(doc, rec.tensors)


class ExplainStore:
    """Per app: live recorders, traces read back from disk, rendered steps (all bounded LRUs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: OrderedDict[str, Live] = OrderedDict()
        self.traces: OrderedDict[str, Any] = OrderedDict()
        self.rendered: OrderedDict[tuple, dict] = OrderedDict()

    @staticmethod
    def _put(cache: OrderedDict, key, value, keep: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > keep:
            cache.popitem(last=False)

    def add_live(self, job_id: str, live: Live) -> None:
        with self.lock:
            self._put(self.live, job_id, live, 6)

    def drop_live(self, job_id: str) -> None:
        with self.lock:
            self.live.pop(job_id, None)

    def get_live(self, job_id: str) -> Live | None:
        with self.lock:
            return self.live.get(job_id)

    def trace(self, folder: Path):
        from ..explain.trace import load_trace

        key = str(folder)
        with self.lock:
            if key in self.traces:
                return self.traces[key]
        trace = load_trace(folder)
        with self.lock:
            self._put(self.traces, key, trace, 3)
        return trace

    def rendered_step(self, key: tuple, make) -> dict:
        with self.lock:
            if key in self.rendered:
                return self.rendered[key]
        value = make()
        with self.lock:
            self._put(self.rendered, key, value, 200)
        return value


_STORE_LOCK = threading.Lock()


def get_store(request: Request) -> ExplainStore:
    with _STORE_LOCK:
        store = getattr(request.app.state, "glassforge_explain", None)
        if store is None:
            store = request.app.state.glassforge_explain = ExplainStore()
        return store


def explain_folder(state: ServerState, job_id: str) -> Path:
    if not SAFE_ID.match(job_id):
        raise ApiError(422, f"job id {job_id!r}: expected letters, digits, '-' and '_' only")
    return state.config.data_dir / "explain" / job_id


def explained(request: Request, job_id: str, kind: str, status: str) -> bool:
    """Whether ``GET /api/v1/jobs/{id}/steps`` has (or will have) recorded steps for this job."""
    if kind != "explain" or not SAFE_ID.match(job_id):
        return False
    if status not in FINISHED or get_store(request).get_live(job_id) is not None:
        return True
    return (explain_folder(request.app.state.glassforge, job_id) / "trace.json").is_file()


# ---------------------------------------------------------------- the job


def run_explain(state: ServerState, spec, job, folder: Path, store: ExplainStore) -> dict[str, Any]:
    import torch

    from ..explain.attention import record_attention
    from ..explain.i18n import strings
    from ..explain.pictures import Previewer, gif_uri
    from ..explain.recorder import TraceRecorder
    from ..explain.report import render_html, step_pictures, write_report
    from ..explain.trace import from_recorder
    from ..models.patcher import UNetPatcher
    from ..pipeline_events import Decoded, Sampled
    from ..pngfile import write_image
    from ..sampling.events import SamplerStep
    from ..sampling.names import resolve_sampler
    from ..txt2img import txt2img, validate
    from .generation import make_previewer

    started = time.perf_counter()
    managed = state.load_model(spec.model)
    job.timings["load"] = time.perf_counter() - started
    model = managed.model
    p = validate(spec.params, model.default_size)
    recorder = TraceRecorder()
    recorder.describe_model(model, managed.path.stem)
    unet = record_attention(recorder, UNetPatcher(model.unet))
    live = Live(recorder, model)
    store.add_live(job.id, live)
    job.record.update(model=managed.path.stem, model_hash=managed.hash, sampler=resolve_sampler(p.sampler)[0].name,
                      seed=p.seed, prompt=p.prompt, negative_prompt=p.negative_prompt, steps_done=0)  # fmt: skip
    job.previewer = make_previewer(
        model, p.width, p.height, state.config.preview, state.config.full_preview_pixels
    )
    job.progress.batches = p.batch_count
    clock = {"last": time.perf_counter(), "batch": 0}

    def on_step(event) -> None:
        now = time.perf_counter()
        state.metrics.on_step(now - clock["last"])
        clock["last"] = now
        job.record["steps_done"] += 1

    listener = job.step_listener(on_step)

    def on_event(event) -> None:
        recorder(event)
        if isinstance(event, SamplerStep):
            live.steps.append((clock["batch"], event.i))
            listener(event)  # progress, the live preview, and the interrupt check
        elif isinstance(event, Sampled):
            job.timings["sampling"] = job.timings.get("sampling", 0.0) + time.perf_counter() - sampling_from
        elif isinstance(event, Decoded) and event.batch + 1 < p.batch_count:
            clock["batch"] = event.batch + 1
            job.progress.batch, job.progress.step = event.batch + 1, 0

    sampling_from = time.perf_counter()
    try:
        with torch.inference_mode():
            result = txt2img(model, p, model_name=managed.path.stem, model_hash=managed.hash, on_event=on_event,
                             unet=unet)  # fmt: skip
    except JobInterrupted:
        raise  # the steps done stay viewable from ``live`` (no trace files: the run did not finish)
    job.timings["sampling"] = time.perf_counter() - sampling_from
    written = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    recorder.meta["params"] = {
        **{k: v for k, v in dataclasses.asdict(result.params).items() if k != "sampler_options"},
        "seeds": result.seeds,
        "infotexts": result.infotexts,
        "model_hash": managed.hash,
    }
    images = [
        write_image(image, folder / f"image-{k}.png", text)
        for k, (image, text) in enumerate(zip(result.images, result.infotexts, strict=True))
    ]
    recorder.meta["images"] = [path.name for path in images]
    job.record.update(images=images, infotexts=list(result.infotexts))
    try:  # the images are listed before the (slower) trace and report are written
        state.history.record(job)
    except Exception:
        log.warning("could not update the history row of job %s", job.id, exc_info=True)
    recorder.save(folder)
    trace = from_recorder(recorder)
    with torch.inference_mode():
        write_report(trace, model, folder, lang="en")
        previewer = Previewer(model, "auto")
        pics = step_pictures(trace, previewer, strings("ja"))
        page = render_html(
            trace, pics, lang="ja", preview_mode=previewer.mode, gif=gif_uri(folder / "denoise.gif")
        )
    (folder / REPORTS["ja"]).write_text(page, encoding="utf-8")
    job.timings["report"] = time.perf_counter() - written
    store.drop_live(job.id)  # everything is on disk now
    return {"folder": str(folder), "images": [str(p) for p in images]}
