"""Node classes: a schema plus a stateless function ``run(ctx, **inputs)``.

A node returns a tuple with one value per output, or a :class:`NodeResult` that also carries a UI
result (what ComfyUI sends in ``executed``, e.g. saved images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import NodeSchema


@dataclass(frozen=True)
class NodeResult:
    values: tuple = ()
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeClass:
    schema: NodeSchema
    run: Callable[..., tuple | NodeResult]
    check: Callable[..., str | None] | None = None  # cross-input validation: (env, **constants) → error

    @property
    def name(self) -> str:
        return self.schema.name


class NodeRegistry(Mapping[str, NodeClass]):
    def __init__(self):
        self._nodes: dict[str, NodeClass] = {}

    def add(self, node: NodeClass) -> NodeClass:
        if node.name in self._nodes:
            raise ValueError(f"node class {node.name!r} registered twice")
        self._nodes[node.name] = node
        return node

    def node(self, schema: NodeSchema, check: Callable[..., str | None] | None = None):
        """Decorator: register ``fn(ctx, **inputs)`` as the node described by ``schema``."""

        def register(fn):
            self.add(NodeClass(schema, fn, check))
            return fn

        return register

    def __getitem__(self, name: str) -> NodeClass:
        return self._nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def object_info(self, env: Any = None) -> dict[str, dict]:
        return {name: node.schema.object_info(env) for name, node in self._nodes.items()}
