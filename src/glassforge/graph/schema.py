"""One schema object per node class: inputs, outputs, types, defaults, ranges, choices, descriptions.

Validation, the ``/object_info`` description, ``glassforge nodes`` and the explainer's labels are all
generated from it. Socket types use ComfyUI's names ("MODEL", "LATENT", "INT", …) so exported API-format
workflows and the ComfyUI frontend understand them; a combo input (a choice list) is type "COMBO".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# value types that travel over links
LINK_TYPES = (
    "MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "MASK",
    "SIGMAS", "SAMPLER", "NOISE", "GUIDER",
)  # fmt: skip
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


class SchemaError(ValueError):
    """A node class whose schema is inconsistent (a programming error, raised at registration)."""


@dataclass(frozen=True)
class Input:
    """One input socket or widget.

    ``choices``: a list, or a callable ``(env) -> list`` for lists known only at run time (checkpoint
    files). ``min``/``max``/``step`` apply to INT and FLOAT. ``optional`` inputs may be left out.
    """

    name: str
    type: str
    description: str = ""
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Sequence[str] | Callable[[Any], Sequence[str]] | None = None
    optional: bool = False
    multiline: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # more object_info options (round, tooltip…)

    def choice_list(self, env: Any = None) -> list[str]:
        if self.choices is None:
            return []
        return list(self.choices(env) if callable(self.choices) else self.choices)

    def object_info(self, env: Any = None) -> list:
        options: dict[str, Any] = {}
        if self.default is not None:
            options["default"] = self.default
        for key in ("min", "max", "step"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        if self.multiline:
            options["multiline"] = True
        if self.description:
            options["tooltip"] = self.description
        options.update(self.extra)
        if self.type == "COMBO":
            return [self.choice_list(env), options]
        return [self.type, options]


@dataclass(frozen=True)
class Output:
    type: str
    name: str | None = None  # default: the type name
    description: str = ""
    is_list: bool = False

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class NodeSchema:
    """What a node is. ``role`` says what it does in the seeds' terms (TextPrompt → PromptVectorization → …)."""

    name: str  # class_type in workflows
    display_name: str
    category: str
    description: str
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    output_node: bool = False  # a node whose result is the workflow's purpose (saves, previews)
    role: str = ""
    hidden: dict[str, str] = field(default_factory=dict)  # e.g. {"prompt": "PROMPT"} (object_info only)
    not_idempotent: bool = False  # never shared with another node id by the cache

    def __post_init__(self):
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise SchemaError(f"{self.name}: duplicate input names {names}")
        for i in self.inputs:
            if (
                i.type not in LINK_TYPES
                and i.type not in WIDGET_TYPES
                and "," not in i.type
                and i.type != "*"
            ):
                raise SchemaError(f"{self.name}.{i.name}: unknown type {i.type!r}")
            if i.type == "COMBO" and i.choices is None:
                raise SchemaError(f"{self.name}.{i.name}: a COMBO input needs choices")

    def input(self, name: str) -> Input | None:
        return next((i for i in self.inputs if i.name == name), None)

    def object_info(self, env: Any = None) -> dict:
        """This node in ``GET /object_info``'s shape."""
        required = {i.name: i.object_info(env) for i in self.inputs if not i.optional}
        optional = {i.name: i.object_info(env) for i in self.inputs if i.optional}
        spec: dict[str, Any] = {"required": required}
        if optional:
            spec["optional"] = optional
        if self.hidden:
            spec["hidden"] = dict(self.hidden)
        return {
            "input": spec,
            "input_order": {k: list(v) for k, v in spec.items() if k != "hidden"},
            "output": [o.type for o in self.outputs],
            "output_is_list": [o.is_list for o in self.outputs],
            "output_name": [o.label for o in self.outputs],
            "output_tooltips": [o.description for o in self.outputs],
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": "glassforge",
            "category": self.category,
            "output_node": self.output_node,
        }


def types_match(produced: str, expected: str) -> bool:
    """ComfyUI's rule: types compare as strings, comma-separated unions allowed, ``*`` matches anything."""
    if produced == "*" or expected == "*":
        return True
    return bool(set(produced.split(",")) & set(expected.split(",")))


def coerce(value: Any, inp: Input) -> Any:
    """A workflow constant converted to the input's type; raises ValueError/TypeError if it cannot be."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    kind = inp.type
    if kind == "INT":
        if isinstance(value, bool):
            raise TypeError("a boolean is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    if kind == "FLOAT":
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        return float(value)
    if kind == "STRING":
        if isinstance(value, (dict, list)):
            raise TypeError("expected text")
        return str(value)
    if kind == "BOOLEAN":
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"{value!r} is not true or false")
        return bool(value)
    if kind == "COMBO":
        return value if isinstance(value, str) else str(value)
    raise TypeError(f"a {kind} input takes a link from another node, not a constant")
