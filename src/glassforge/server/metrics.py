"""Counters for ``/metrics`` in the Prometheus text format (version 0.0.4), written by hand: a few
counters, gauges and histograms do not need a client library."""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter
from dataclasses import dataclass, field

from .jobs import FINISHED, Job

JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]
        return out


class Metrics:
    """Fed by the job queue (as a listener) and by the generation code (steps, model loads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs = Counter()  # (kind, status) → finished jobs
        self.job_seconds = Histogram(JOB_BUCKETS)
        self.step_seconds = Histogram(STEP_BUCKETS)
        self.load_seconds = Histogram(LOAD_BUCKETS)
        self.steps_total = 0
        self.images_total = 0
        self.last_steps_per_second = 0.0

    def on_job(self, job: Job, what: str) -> None:
        if what != "finished" or job.status not in FINISHED:
            return
        with self._lock:
            self.jobs[(job.kind, job.status)] += 1
            if job.started is not None and job.finished is not None:
                self.job_seconds.observe(job.finished - job.started)
            self.images_total += len(job.record.get("images", []))
            sampling = job.timings.get("sampling")
            steps = job.record.get("steps_done", 0)
            if sampling and steps:
                self.last_steps_per_second = steps / sampling

    def on_step(self, seconds: float) -> None:
        with self._lock:
            self.steps_total += 1
            self.step_seconds.observe(seconds)

    def on_model_load(self, seconds: float) -> None:
        with self._lock:
            self.load_seconds.observe(seconds)

    def render(self, *, queue_length: int, running: int, loaded_models: int) -> str:
        with self._lock:
            lines = [
                "# HELP glassforge_jobs_total Jobs finished, by kind and status.",
                "# TYPE glassforge_jobs_total counter",
            ]
            kinds = sorted({k for k, _ in self.jobs} | {"txt2img"})
            for kind in kinds:
                for status in FINISHED:
                    lines.append(
                        f'glassforge_jobs_total{{kind="{kind}",status="{status}"}} {self.jobs[(kind, status)]}'
                    )
            lines += [
                "# HELP glassforge_queue_length Jobs waiting to run.",
                "# TYPE glassforge_queue_length gauge",
                f"glassforge_queue_length {queue_length}",
                "# HELP glassforge_jobs_running Jobs running now.",
                "# TYPE glassforge_jobs_running gauge",
                f"glassforge_jobs_running {running}",
                "# HELP glassforge_job_seconds Time from a job's start to its end.",
                "# TYPE glassforge_job_seconds histogram",
                *self.job_seconds.lines("glassforge_job_seconds"),
                "# HELP glassforge_step_seconds Time of one sampler step (model calls and update).",
                "# TYPE glassforge_step_seconds histogram",
                *self.step_seconds.lines("glassforge_step_seconds"),
                "# HELP glassforge_sampling_steps_total Sampler steps run.",
                "# TYPE glassforge_sampling_steps_total counter",
                f"glassforge_sampling_steps_total {self.steps_total}",
                "# HELP glassforge_images_total Images generated.",
                "# TYPE glassforge_images_total counter",
                f"glassforge_images_total {self.images_total}",
                "# HELP glassforge_steps_per_second Sampler steps per second of the last finished job.",
                "# TYPE glassforge_steps_per_second gauge",
                f"glassforge_steps_per_second {self.last_steps_per_second:.6f}",
                "# HELP glassforge_model_load_seconds Time to load and place a checkpoint.",
                "# TYPE glassforge_model_load_seconds histogram",
                *self.load_seconds.lines("glassforge_model_load_seconds"),
                "# HELP glassforge_models_loaded Checkpoints kept loaded.",
                "# TYPE glassforge_models_loaded gauge",
                f"glassforge_models_loaded {loaded_models}",
            ]
        rss = _rss_bytes()
        if rss is not None:
            lines += [
                "# HELP process_resident_memory_bytes Resident memory size in bytes.",
                "# TYPE process_resident_memory_bytes gauge",
                f"process_resident_memory_bytes {rss}",
            ]
        device = _device_bytes()
        if device:
            lines += [
                "# HELP glassforge_device_memory_bytes Accelerator memory: allocated by torch, and total.",
                "# TYPE glassforge_device_memory_bytes gauge",
                *(
                    f'glassforge_device_memory_bytes{{device="{d}",kind="{k}"}} {v}'
                    for (d, k), v in device.items()
                ),
            ]
        return "\n".join(lines) + "\n"


def _device_bytes() -> dict[tuple[str, str], int]:
    """CUDA / MPS memory where torch has such a device (nothing on a CPU-only machine)."""
    import sys

    torch = sys.modules.get("torch")
    out: dict[tuple[str, str], int] = {}
    if torch is None:
        return out
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                out[(f"cuda:{i}", "allocated")] = int(torch.cuda.memory_allocated(i))
                out[(f"cuda:{i}", "free")] = int(free)
                out[(f"cuda:{i}", "total")] = int(total)
        mps = getattr(torch, "mps", None)
        if mps is not None and torch.backends.mps.is_available():
            out[("mps", "allocated")] = int(mps.current_allocated_memory())
    except Exception:  # a metrics scrape never fails because of a device query
        return {}
    return out


def _rss_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc``); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
