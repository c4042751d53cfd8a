"""The executor's events: one typed stream, in ComfyUI's message vocabulary.

The CLI (``glassforge run --events``), the server's websocket and the explainer consume the same
frozen dataclasses; ``message()`` gives ComfyUI's ``{"type", "data"}`` JSON shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class GraphEvent:
    prompt_id: str

    type = "event"

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id}

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data()}


@dataclass(frozen=True)
class ExecutionStart(GraphEvent):
    timestamp: int = field(default_factory=_now_ms)
    type = "execution_start"

    def data(self):
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class ExecutionCached(GraphEvent):
    nodes: tuple[str, ...] = ()
    timestamp: int = field(default_factory=_now_ms)
    type = "execution_cached"

    def data(self):
        return {"nodes": list(self.nodes), "prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class Executing(GraphEvent):
    node: str | None = None  # None: the prompt has finished (ComfyUI's "done" signal)
    type = "executing"

    def data(self):
        return {"node": self.node, "display_node": self.node, "prompt_id": self.prompt_id}


@dataclass(frozen=True)
class Progress(GraphEvent):
    node: str = ""
    value: int = 0
    max: int = 0
    type = "progress"

    def data(self):
        return {"value": self.value, "max": self.max, "prompt_id": self.prompt_id, "node": self.node}


@dataclass(frozen=True)
class Preview(GraphEvent):
    """A step's picture (predicted x0) from a sampling node; sent as a binary frame by the server."""

    node: str = ""
    image: Any = None  # PIL image
    type = "preview"

    def data(self):
        return {"node": self.node, "prompt_id": self.prompt_id}


@dataclass(frozen=True)
class Executed(GraphEvent):
    node: str = ""
    output: dict[str, Any] = field(default_factory=dict)  # the node's UI result, e.g. {"images": [...]}
    type = "executed"

    def data(self):
        return {
            "node": self.node,
            "display_node": self.node,
            "output": self.output,
            "prompt_id": self.prompt_id,
        }


@dataclass(frozen=True)
class ExecutionSuccess(GraphEvent):
    timestamp: int = field(default_factory=_now_ms)
    type = "execution_success"

    def data(self):
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class ExecutionError(GraphEvent):
    node_id: str = ""
    node_type: str = ""
    executed: tuple[str, ...] = ()
    exception_message: str = ""
    exception_type: str = ""
    traceback: tuple[str, ...] = ()
    timestamp: int = field(default_factory=_now_ms)
    type = "execution_error"

    def data(self):
        return {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "exception_message": self.exception_message,
            "exception_type": self.exception_type,
            "traceback": list(self.traceback),
            "current_inputs": {},
            "current_outputs": {},
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True)
class ExecutionInterrupted(GraphEvent):
    node_id: str = ""
    node_type: str = ""
    executed: tuple[str, ...] = ()
    timestamp: int = field(default_factory=_now_ms)
    type = "execution_interrupted"

    def data(self):
        return {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "timestamp": self.timestamp,
        }


GraphEventHandler = Callable[[Any], None]  # receives GraphEvents and, from sampling nodes, sampling events
