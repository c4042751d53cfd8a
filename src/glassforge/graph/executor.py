"""Runs validated workflows: topological order, an output cache keyed by input signature, events, interrupt.

The signature of a node is its class, its constants and the signatures of its ancestors, so when one
input changes that node and everything downstream re-runs while the rest comes from the cache (the
model load and the text encoding survive a new seed). Re-running an identical workflow runs nothing
(ComfyUI's behaviour; output nodes report their cached UI result again). Nodes marked
``not_idempotent`` include their node id in the signature.
"""

from __future__ import annotations

import hashlib
import json
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import (
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
)
from .registry import NodeRegistry, NodeResult
from .validate import ValidWorkflow, is_link, validate_workflow


class Interrupted(Exception):
    """Raised inside a node (between sampler steps) or between nodes when an interrupt was asked for."""


@dataclass
class NodeContext:
    """What a running node may use besides its inputs: the environment (model manager, folders), the
    whole workflow (SaveImage embeds it), and the event stream."""

    node_id: str
    class_type: str
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    env: Any
    emit: Callable[[Any], None]
    interrupt: threading.Event

    def check_interrupt(self) -> None:
        if self.interrupt.is_set():
            raise Interrupted(f"interrupted in node {self.node_id} ({self.class_type})")

    def progress(self, value: int, maximum: int) -> None:
        self.emit(Progress(self.prompt_id, self.node_id, value, maximum))


@dataclass
class RunResult:
    prompt_id: str
    status: str  # "success", "error", "interrupted"
    outputs: dict[str, dict] = field(default_factory=dict)  # output node id → UI result
    executed: list[str] = field(default_factory=list)  # node ids run in this execution, in order
    cached: list[str] = field(default_factory=list)  # node ids whose outputs came from the cache
    values: dict[str, tuple] = field(default_factory=dict)  # node id → output values (in-process users)
    error: str | None = None
    node_errors: dict[str, dict] = field(default_factory=dict)  # validation errors of dropped outputs

    def raise_for_status(self) -> RunResult:
        if self.status != "success":
            raise RuntimeError(self.error or self.status)
        return self


def _freeze(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 8 and 8.0 are the same constant
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _freeze(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (str, int, bool, float)):
        return value
    return f"<{type(value).__name__}:{id(value)}>"  # never equal across runs


def signatures(workflow: ValidWorkflow, registry: NodeRegistry) -> dict[str, str]:
    sig: dict[str, str] = {}

    def of(node_id: str) -> str:
        if node_id in sig:
            return sig[node_id]
        node = workflow.nodes[node_id]
        schema = registry[node["class_type"]].schema
        parts: list[Any] = [node["class_type"]]
        if schema.not_idempotent:
            parts.append(["node", node_id])
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            parts.append([name, ["link", of(value[0]), value[1]] if is_link(value) else _freeze(value)])
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        sig[node_id] = digest
        return digest

    for node_id in workflow.nodes:
        of(node_id)
    return sig


class Executor:
    """Runs workflows with ``registry``'s nodes; keeps an output cache of up to ``cache_size`` node
    results between runs (least recently used dropped first; this run's entries are always kept)."""

    def __init__(self, registry: NodeRegistry, env: Any = None, cache_size: int = 64):
        self.registry = registry
        self.env = env
        self.cache_size = cache_size
        self.cache: OrderedDict[str, NodeResult] = OrderedDict()
        self._lock = threading.Lock()  # one run at a time per executor

    def validate(self, prompt: Any) -> ValidWorkflow:
        return validate_workflow(prompt, self.registry, self.env)

    def clear_cache(self) -> None:
        self.cache.clear()

    def _order(self, workflow: ValidWorkflow, sig: dict[str, str]) -> tuple[list[str], list[str]]:
        """(nodes to run in dependency order, cached nodes the run touches); ancestors of a cached node
        are not needed unless an uncached node needs them."""
        order: list[str] = []
        cached: list[str] = []
        seen: set[str] = set()

        def visit(node_id: str) -> None:
            if node_id in seen:
                return
            seen.add(node_id)
            if sig[node_id] in self.cache:
                cached.append(node_id)
                return
            for name in sorted(workflow.nodes[node_id]["inputs"]):
                value = workflow.nodes[node_id]["inputs"][name]
                if is_link(value):
                    visit(value[0])
            order.append(node_id)

        for out in sorted(workflow.outputs, key=_id_key):
            visit(out)
        return order, cached

    def run(
        self,
        prompt: Any,
        *,
        prompt_id: str | None = None,
        extra_data: dict | None = None,
        on_event: Callable[[Any], None] | None = None,
        interrupt: threading.Event | None = None,
    ) -> RunResult:
        """Validate (raises :class:`WorkflowError` with every problem) and run ``prompt``."""
        workflow = self.validate(prompt)
        prompt_id = prompt_id or uuid.uuid4().hex
        emit = on_event or (lambda event: None)
        interrupt = interrupt or threading.Event()
        with self._lock:
            return self._run(workflow, prompt, prompt_id, extra_data or {}, emit, interrupt)

    def _run(self, workflow, prompt, prompt_id, extra_data, emit, interrupt) -> RunResult:
        sig = signatures(workflow, self.registry)
        order, cached = self._order(workflow, sig)
        result = RunResult(prompt_id, "success", cached=cached, node_errors=workflow.node_errors)
        emit(ExecutionStart(prompt_id))
        emit(ExecutionCached(prompt_id, tuple(cached)))
        values: dict[str, tuple] = {}
        for node_id in cached:
            entry = self.cache[sig[node_id]]
            self.cache.move_to_end(sig[node_id])
            values[node_id] = entry.values
            if node_id in workflow.outputs:
                result.outputs[node_id] = entry.ui
                if entry.ui:
                    emit(Executed(prompt_id, node_id, entry.ui))
        current = None
        try:
            for node_id in order:
                node = workflow.nodes[node_id]
                current = node_id
                if interrupt.is_set():
                    raise Interrupted("interrupted between nodes")
                emit(Executing(prompt_id, node_id))
                ctx = NodeContext(
                    node_id, node["class_type"], prompt_id, prompt, extra_data, self.env, emit, interrupt
                )
                inputs = {name: values[v[0]][v[1]] if is_link(v) else v for name, v in node["inputs"].items()}
                out = self.registry[node["class_type"]].run(ctx, **inputs)
                entry = out if isinstance(out, NodeResult) else NodeResult(tuple(out))
                values[node_id] = entry.values
                self.cache[sig[node_id]] = entry
                result.executed.append(node_id)
                if node_id in workflow.outputs:
                    result.outputs[node_id] = entry.ui
                    if entry.ui:
                        emit(Executed(prompt_id, node_id, entry.ui))
        except Interrupted:
            result.status, result.error = "interrupted", "interrupted"
            node_type = workflow.nodes[current]["class_type"] if current else ""
            emit(ExecutionInterrupted(prompt_id, current or "", node_type, tuple(result.executed)))
        except Exception as err:  # a failing node ends this run, never the process
            result.status = "error"
            node_type = workflow.nodes[current]["class_type"]
            result.error = f"node {current} ({node_type}): {err}"
            emit(
                ExecutionError(
                    prompt_id, current, node_type, tuple(result.executed), str(err), type(err).__name__,
                    tuple(traceback.format_exception(err)),
                )
            )  # fmt: skip
        else:
            emit(ExecutionSuccess(prompt_id))
        emit(Executing(prompt_id, None))
        result.values = values
        self._trim(set(sig.values()))
        return result

    def _trim(self, keep: set[str]) -> None:
        excess = len(self.cache) - self.cache_size
        for key in list(self.cache):
            if excess <= 0:
                break
            if key not in keep:
                del self.cache[key]
                excess -= 1


def _id_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)
