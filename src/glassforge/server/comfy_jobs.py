"""ComfyUI's side of the server: one :class:`Comfy` per app (``app.state.comfy``) holding the workflow
executor (one per server, so its output cache persists across jobs), the folders, the websocket hub and
ComfyUI's in-memory ``/history``; and the ``"workflow"`` job the worker runs.

A ``POST /prompt`` becomes a :class:`~.jobs.Job` of kind ``"workflow"`` whose id is the prompt id, on the
same queue as the A1111 jobs. The worker runs it with the job's ``interrupt_event`` as the executor's
interrupt and relays every event to the submitting client. The ComfyUI history entry is written before
``executing {node: null}`` goes out, so a client that fetches ``/history/{id}`` on that signal finds it;
the history database gets its row (kind ``"workflow"``) from the queue as for every job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .comfy_ws import Hub, preview_jpeg
from .jobs import Job

WORKFLOW = "workflow"  # the job kind
MAX_HISTORY = 10000  # ComfyUI keeps this many /history entries
PREVIEW_METHODS = ("auto", "latent2rgb", "taesd", "default", "none")  # extra_data.preview_method values
_FINISHING = (
    "execution_start",
    "execution_cached",
    "execution_success",
    "execution_error",
    "execution_interrupted",
)  # fmt: skip  (the events ComfyUI keeps in status.messages)
_BROADCAST = ("progress", "execution_interrupted")  # sent to everybody when the prompt has no client_id

log = logging.getLogger("glassforge.server")


class WorkflowFailed(RuntimeError):
    """A node raised: the job is marked ``error`` with this message (the client got execution_error)."""


def public_ui(ui: dict[str, Any]) -> dict[str, Any]:
    """A node's UI result as clients see it: file entries without the server-side ``path``."""
    out: dict[str, Any] = {}
    for key, value in (ui or {}).items():
        if isinstance(value, list):
            value = [
                {k: v for k, v in item.items() if k != "path"} if isinstance(item, dict) else item
                for item in value
            ]
        out[key] = value
    return out


def _link_text(prompt: dict, value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2:
        node = prompt.get(str(value[0]))
        if isinstance(node, dict) and node.get("class_type") == "CLIPTextEncode":
            text = (node.get("inputs") or {}).get("text")
            return text if isinstance(text, str) else None
    return None


def summarize(prompt: dict) -> dict[str, Any]:
    """What the history database can search in a workflow: the first sampler's seed, sampler and
    prompts, the first checkpoint's name."""
    from ..sampling.names import resolve_sampler

    out: dict[str, Any] = {}
    for node in prompt.values():
        if not isinstance(node, dict):
            continue
        kind, inputs = node.get("class_type"), node.get("inputs") or {}
        if (
            kind == "CheckpointLoaderSimple"
            and "model" not in out
            and isinstance(inputs.get("ckpt_name"), str)
        ):
            out["model"] = Path(inputs["ckpt_name"]).stem
        if kind in ("KSampler", "KSamplerAdvanced") and "seed" not in out:
            seed = inputs.get("seed", inputs.get("noise_seed"))
            out["seed"] = seed if isinstance(seed, int) else None
            try:
                out["sampler"] = resolve_sampler(str(inputs.get("sampler_name")))[0].name
            except Exception:
                out["sampler"] = inputs.get("sampler_name")
            out["prompt"] = _link_text(prompt, inputs.get("positive"))
            out["negative_prompt"] = _link_text(prompt, inputs.get("negative"))
    return out


class Comfy:
    def __init__(self, state):
        from ..graph.env import GraphEnv
        from ..graph.executor import Executor
        from ..graph.nodes import core_nodes

        self.state = state
        data = state.config.data_dir
        self.output_dir = state.config.output_dir / "comfyui"  # ComfyUI's "output" type
        self.input_dir = data / "comfyui" / "input"
        self.temp_dir = data / "comfyui" / "temp"
        self.user_dir = data / "comfyui" / "user" / "default"  # settings, workflows (single user)
        self.registry = core_nodes()
        self.env = GraphEnv(models=state.manager, output_dir=self.output_dir, input_dir=self.input_dir,
                            temp_dir=self.temp_dir, preview="rgb")  # fmt: skip
        self.executor = Executor(self.registry, self.env)
        self.hub = Hub(self.queue_remaining, self._on_connect)
        self.history: OrderedDict[str, dict] = OrderedDict()
        self.preview_method = "auto"  # "none": no binary preview frames unless a prompt asks for them
        self.number = 0
        self._lock = threading.Lock()
        self._running: dict[str, Any] = {}  # prompt_id, client_id, node of the workflow being run
        state.queue.listeners.append(self._on_job)

    # ---------------------------------------------------------------- queue

    def folder(self, kind: str) -> Path | None:
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}.get(kind)

    def workflow_jobs(self) -> tuple[Job | None, list[Job]]:
        queue = self.state.queue
        current = queue.current
        running = current if current is not None and current.kind == WORKFLOW else None
        return running, [j for j in queue.pending() if j.kind == WORKFLOW]

    def queue_remaining(self) -> int:
        running, pending = self.workflow_jobs()
        return len(pending) + (running is not None)

    def known(self, prompt_id: str) -> bool:
        """Whether a job has this id (in the queue or in the history database): ids are never reused."""
        return self.state.queue.get(prompt_id) is not None or self.state.history.get(prompt_id) is not None

    def next_number(self) -> int:
        with self._lock:
            number = self.number
            self.number += 1
            return number

    @staticmethod
    def queue_item(job: Job) -> list:
        """ComfyUI's queue tuple: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        p = job.params
        return [
            p.get("number", 0),
            job.id,
            p.get("prompt", {}),
            p.get("extra_data", {}),
            p.get("outputs", []),
        ]

    def submit(self, prompt: dict, *, number: float, extra_data: dict, outputs: list[str],
               prompt_id: str | None, front: bool, targets: list[str] | None) -> Job:  # fmt: skip
        params = {"number": number, "prompt": prompt, "extra_data": extra_data, "outputs": outputs,
                  "client_id": extra_data.get("client_id"), "partial_execution_targets": targets}  # fmt: skip
        job = Job(kind=WORKFLOW, params=params, run=self.run)
        if prompt_id:
            job.id = prompt_id
        job.record.update({k: v for k, v in summarize(prompt).items() if v is not None})
        return self.state.queue.submit(job, front=front)

    def _on_job(self, job: Job, what: str) -> None:
        if job.kind == WORKFLOW and what in ("queued", "finished"):
            self.hub.broadcast_status()

    def _on_connect(self, sid: str) -> list[dict]:
        running = dict(self._running)
        if running.get("client_id") == sid and running.get("node"):
            node, prompt_id = running["node"], running["prompt_id"]
            return [
                {"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": prompt_id}}
            ]
        return []

    def free(self) -> None:
        """Drop the workflow cache and the loaded checkpoints (the cache holds them too), between runs."""
        with self.executor._lock:  # the executor's one-run-at-a-time lock: never in the middle of a run
            self.executor.clear_cache()
            self.state.manager.unload_all()

    def only_targets(self, prompt: Any, targets: list[str] | None) -> Any:
        """``prompt`` without the output nodes that are not in ``targets`` (partial execution)."""
        if not targets or not isinstance(prompt, dict):
            return prompt
        return {k: v for k, v in prompt.items() if k in targets or not self.is_output(v)}

    # ---------------------------------------------------------------- history

    def add_history(self, prompt_id: str, entry: dict) -> None:
        with self._lock:
            self.history[prompt_id] = entry
            self.history.move_to_end(prompt_id)
            while len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)

    def history_page(self, max_items: int | None, offset: int) -> dict[str, dict]:
        """ComfyUI's paging: ``offset`` −1 (the default) means the last ``max_items`` entries."""
        with self._lock:
            items = list(self.history.items())
        if offset < 0:
            offset = max(0, len(items) - max_items) if max_items is not None else 0
        end = None if max_items is None else offset + max_items
        return dict(items[offset:end])

    def delete_history(self, ids: list[str] | None = None) -> None:
        with self._lock:
            if ids is None:
                self.history.clear()
            for prompt_id in ids or []:
                self.history.pop(str(prompt_id), None)

    # ---------------------------------------------------------------- the job (worker thread)

    def run(self, job: Job):
        from ..graph.validate import WorkflowError

        p = job.params
        prompt_id = job.id
        relay = _Relay(self, job, p.get("client_id") or None)
        prompt = self.only_targets(p["prompt"], p.get("partial_execution_targets"))
        self._running = {"prompt_id": prompt_id, "client_id": relay.client, "node": None}
        try:
            result = self.executor.run(prompt, prompt_id=prompt_id, extra_data=p["extra_data"],
                                       on_event=relay, interrupt=job.interrupt_event)  # fmt: skip
        except WorkflowError as err:  # the checkpoint vanished between POST /prompt and now, say
            relay.failed_to_start(str(err))
            result = None
        finally:
            self._running = {}
        relay.node_done(time.perf_counter())
        status = result.status if result is not None else "error"
        outputs = {node: public_ui(ui) for node, ui in (result.outputs if result else {}).items() if ui}
        self.add_history(prompt_id, {
            "prompt": self.queue_item(job),
            "outputs": outputs,
            "status": {"status_str": "success" if status == "success" else "error",
                       "completed": status == "success", "messages": relay.messages},
            "meta": {node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
                     for node in outputs},
        })  # fmt: skip
        self._record_files(job, result.outputs if result else {})
        if result is not None:
            result.values = {}  # the queue keeps finished jobs: no tensors or models held by them
        for message in relay.held:  # executing null: the entry is there for clients that fetch it now
            self.hub.send(relay.client, message)
        if status == "error":
            raise WorkflowFailed(
                result.error if result is not None else relay.messages[-1][1]["exception_message"]
            )
        return result

    def is_output(self, node: Any) -> bool:
        kind = node.get("class_type") if isinstance(node, dict) else None
        return kind in self.registry and self.registry[kind].schema.output_node

    def _preview(self, job: Job, client: str | None, event) -> None:
        jpeg = preview_jpeg(event.image)
        meta = {"node_id": event.node, "prompt_id": event.prompt_id, "display_node_id": event.node,
                "parent_node_id": None, "real_node_id": event.node, "image_type": "image/jpeg"}  # fmt: skip
        self.hub.preview(client, jpeg, meta)
        with job._lock:  # /api/v1/jobs/{id}/preview shows the same picture
            key = (job.progress.batch, job.progress.step)
            job._latest, job._latest_key, job._preview = event.image, key, (key, event.image)

    @staticmethod
    def _record_files(job: Job, outputs: dict[str, dict]) -> None:
        from ..pngfile import read_infotext

        paths = [Path(item["path"]) for ui in outputs.values() for item in ui.get("images", [])
                 if isinstance(item, dict) and item.get("path") and item.get("type") == "output"]  # fmt: skip
        texts = []
        for path in paths:
            try:
                texts.append(read_infotext(path) or "")
            except (OSError, ValueError):
                texts.append("")
        job.record.update(images=paths, infotexts=texts)


class _Relay:
    """The executor's ``on_event`` for one workflow job (worker thread): events to the client, the
    messages the history keeps, progress, per-node timings, step metrics and previews."""

    def __init__(self, comfy: Comfy, job: Job, client: str | None):
        self.comfy, self.job, self.client = comfy, job, client
        method = job.params["extra_data"].get("preview_method") or comfy.preview_method
        self.previews = method != "none"
        self.messages: list[list] = []  # [event, data] as ComfyUI's status.messages
        self.held: list[dict] = []  # executing null waits until the history entry is written
        self.saved: dict[str, dict] = {}  # output node → its UI result (saved files), as they finish
        self.node: str | None = None
        self.node_started = self.last_step = time.perf_counter()
        job.record.setdefault("steps_done", 0)

    def node_done(self, now: float) -> None:
        if self.node is not None:
            key = f"node {self.node}"
            self.job.timings[key] = self.job.timings.get(key, 0.0) + now - self.node_started

    def __call__(self, event) -> None:
        from ..graph.events import Executing, GraphEvent, Preview
        from ..sampling.events import SamplerStep

        job = self.job
        if isinstance(event, SamplerStep):
            now = time.perf_counter()
            self.comfy.state.metrics.on_step(now - self.last_step)
            self.last_step = now
            job.record["steps_done"] += 1
            job.progress.step, job.progress.total = event.i + 1, event.total
            return
        if isinstance(event, Preview):
            if self.previews and event.image is not None:
                self.comfy._preview(job, self.client, event)
            return
        if not isinstance(event, GraphEvent):
            return
        message = event.message()
        kind = message["type"]
        if kind == "executed":
            message["data"]["output"] = public_ui(message["data"]["output"])
            self.saved[event.node] = event.output
            self.comfy._record_files(job, self.saved)
            try:  # the row lists each saved image at once: a server killed later loses nothing finished
                self.comfy.state.history.record(job)
            except Exception:
                log.warning("could not update the history row of job %s", job.id, exc_info=True)
        if kind in _FINISHING:
            self.messages.append([kind, message["data"]])
        if isinstance(event, Executing):
            now = time.perf_counter()
            self.node_done(now)
            self.node, self.node_started, self.last_step = event.node, now, now
            self.comfy._running = {"prompt_id": job.id, "client_id": self.client, "node": event.node}
            if event.node is None:
                self.held.append(message)
                return
        self.comfy.hub.send(self.client, message, broadcast=kind in _BROADCAST)

    def failed_to_start(self, reason: str) -> None:
        data = {"prompt_id": self.job.id, "node_id": None, "node_type": None, "executed": [],
                "exception_message": reason, "exception_type": "WorkflowError", "traceback": [],
                "current_inputs": {}, "current_outputs": {}, "timestamp": int(time.time() * 1000)}  # fmt: skip
        self.messages.append(["execution_error", data])
        self.comfy.hub.send(self.client, {"type": "execution_error", "data": data})
        self.held = [
            {"type": "executing", "data": {"node": None, "display_node": None, "prompt_id": self.job.id}}
        ]
