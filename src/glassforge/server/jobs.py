"""Jobs and the FIFO queue that runs them, one at a time, on one worker thread per device.

A :class:`Job` is a kind (``"txt2img"``, ``"load_model"``, later ``"workflow"``), JSON-ready params and a
``run(job)`` function. The worker calls ``run`` and records the outcome; HTTP handlers never run it:
they submit and ``await job.wait()``, which resolves when the worker has finished with the job, so the
event loop keeps serving progress, interrupts and other requests meanwhile.

Interrupt and skip are flags on the job. Generation code polls them between sampler steps through
:meth:`Job.step_listener` (a ``SamplerStep`` listener), which raises :class:`JobInterrupted`; the
workflow executor can take :attr:`Job.interrupt_event` directly. A failing job is marked ``error`` with
a one-line message and the worker goes on with the next.

Listeners (``queue.listeners``) hear ``(job, "queued" | "started" | "finished")`` on the thread where it
happened: the history database and the metrics are two of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("glassforge.server")

PENDING, RUNNING, DONE, ERROR, INTERRUPTED = "pending", "running", "done", "error", "interrupted"
STATUSES = (PENDING, RUNNING, DONE, ERROR, INTERRUPTED)
FINISHED = (DONE, ERROR, INTERRUPTED)


class JobInterrupted(Exception):
    """Raised between sampler steps when the job was asked to stop (``skip``: only the current batch)."""

    def __init__(self, skip: bool = False):
        super().__init__("skipped" if skip else "interrupted")
        self.skip = skip


@dataclass
class Progress:
    """Where a running job is: sampler step within the current batch, batch within the job."""

    step: int = 0  # steps done in the current batch
    total: int = 0  # steps of a batch
    batch: int = 0  # index of the current batch (A1111's job_no)
    batches: int = 1  # A1111's job_count
    started: float | None = None  # time.time() when the job started running

    @property
    def fraction(self) -> float:
        if not self.batches:
            return 0.0
        within = self.step / self.total if self.total else 0.0
        return min(1.0, (self.batch + within) / self.batches)

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the time spent so far; None before the first step."""
        if self.started is None or self.fraction <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / self.fraction - elapsed

    def to_dict(self) -> dict[str, Any]:
        eta = self.eta
        return {
            "step": self.step,
            "total": self.total,
            "batch": self.batch,
            "batches": self.batches,
            "fraction": round(self.fraction, 4),
            "started": self.started,
            "eta": None if eta is None else round(eta, 3),
        }


Runner = Callable[["Job"], Any]


@dataclass(eq=False)
class Job:
    kind: str
    params: dict[str, Any]  # JSON-ready: what the job was asked to do (stored in the history)
    run: Runner
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = PENDING
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    exception: BaseException | None = None  # what made the job fail (for the HTTP status)
    result: Any = None
    progress: Progress = field(default_factory=Progress)
    # What the history database records besides params: model, sampler, prompt, images, infotexts, ...
    record: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    interrupt_event: threading.Event = field(default_factory=threading.Event)
    skip_event: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    # Live preview: the latest predicted x0 and how to turn it into a picture (set by the runner).
    previewer: Callable[[Any], Any] | None = None
    _latest: Any = None
    _latest_key: tuple[int, int] | None = None
    _preview: tuple[tuple[int, int], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------- control

    def interrupt(self) -> None:
        self.interrupt_event.set()

    def skip(self) -> None:
        self.skip_event.set()

    @property
    def interrupted(self) -> bool:
        return self.interrupt_event.is_set()

    def check(self) -> None:
        """Raise :class:`JobInterrupted` if an interrupt (or a skip, which is consumed) was asked for."""
        if self.interrupt_event.is_set():
            raise JobInterrupted()
        if self.skip_event.is_set():
            self.skip_event.clear()
            raise JobInterrupted(skip=True)

    def step_listener(self, on_step: Callable[[Any], None] | None = None) -> Callable[[Any], None]:
        """An ``on_event`` handler for sampling: records each ``SamplerStep`` (progress, the latest
        predicted x0 for previews), calls ``on_step``, then stops the run if asked to."""
        from ..sampling.events import SamplerStep

        def on_event(event) -> None:
            if isinstance(event, SamplerStep):
                with self._lock:
                    self.progress.step, self.progress.total = event.i + 1, event.total
                    self._latest = event.denoised
                    self._latest_key = (self.progress.batch, event.i)
                if on_step is not None:
                    on_step(event)
                self.check()

        return on_event

    @property
    def latest_denoised(self):
        return self._latest

    def preview_image(self):
        """The latest predicted x0 as a PIL image (made on demand, cached per step), or None."""
        with self._lock:
            latest, key, previewer = self._latest, self._latest_key, self.previewer
            if self._preview is not None and self._preview[0] == key:
                return self._preview[1]
        if latest is None or previewer is None:
            return None
        image = previewer(latest)
        with self._lock:
            self._preview = (key, image)
        return image

    # ---------------------------------------------------------------- waiting

    async def wait(self) -> Job:
        """Resolves (on the caller's event loop) when the job has finished, whatever its status."""
        return await asyncio.wrap_future(self.future)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "progress": self.progress.to_dict(),
            "timings": dict(self.timings),
        }


class JobQueue:
    """FIFO queue with one worker thread (one per device: a device runs one job at a time)."""

    def __init__(self, device: str = "cpu", keep: int = 1000):
        self.device = device
        self.keep = keep
        self.listeners: list[Callable[[Job, str], None]] = []
        self.current: Job | None = None
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # recent jobs by id, oldest first
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(
            target=self._work, name=f"glassforge-worker-{self.device}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running job, drop the pending ones (marked interrupted), end the worker."""
        with self._cond:
            self._stopping = True
            dropped = list(self._pending)
            self._pending.clear()
            if self.current is not None:
                self.current.interrupt()
            self._cond.notify_all()
        for job in dropped:
            self._finish(job, INTERRUPTED, error="the server stopped before the job ran")
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---------------------------------------------------------------- jobs

    def submit(self, job: Job, *, front: bool = False) -> Job:
        """Queue ``job`` last, or first with ``front`` (ComfyUI's "queue front")."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is stopping; no new jobs are taken")
            if job.id in self._jobs:
                raise ValueError(f"a job with id {job.id!r} already exists")
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status not in FINISHED:
                    break
                del self._jobs[oldest]
            if front:
                self._pending.appendleft(job)
            else:
                self._pending.append(job)
            self._notify(job, "queued")
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._pending)

    def position(self, job: Job) -> int | None:
        """0-based place in the queue of a pending job (None once it runs)."""
        with self._cond:
            for i, other in enumerate(self._pending):
                if other is job:
                    return i
        return None

    def interrupt(self, job: Job) -> None:
        """Stop a running job between steps; a pending one is taken off the queue (``interrupted``)."""
        with self._cond:
            job.interrupt()
            try:
                self._pending.remove(job)
            except ValueError:
                return
        self._finish(job, INTERRUPTED, error="interrupted before it started")

    # ---------------------------------------------------------------- the worker

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                self.current = job
                job.status, job.started = RUNNING, time.time()
                job.progress.started = job.started
            self._notify(job, "started")
            status, error, exc = DONE, None, None
            try:
                job.result = job.run(job)
                if job.interrupted:
                    status = INTERRUPTED
            except JobInterrupted:
                status = INTERRUPTED
            except Exception as e:  # a failing job never takes the worker down
                status, error, exc = ERROR, _one_line(e), e
                log.warning("job %s (%s) failed: %s", job.id, job.kind, error, exc_info=True)
            job.exception = exc
            with self._cond:
                self.current = None
            self._finish(job, status, error)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error, job.finished = status, error, time.time()
        self._notify(job, "finished")
        if not job.future.done():
            job.future.set_result(job)

    def _notify(self, job: Job, what: str) -> None:
        for listener in self.listeners:
            try:
                listener(job, what)
            except Exception:  # a broken listener must not stop the queue
                log.exception("job listener failed on %s %s", what, job.id)


def _one_line(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(text.split()) or type(err).__name__
    return text if len(text) <= 2000 else text[:2000] + "…"
