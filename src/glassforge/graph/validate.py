"""Validation of API-format workflows, reporting every error at once in ComfyUI's error shape.

A workflow (ComfyUI's "API format") maps node ids to ``{"class_type", "inputs": {name: constant |
[source_id, output_index]}}``. Every node reachable from an output node is checked, each input against
its schema: missing, bad link, wrong type, value not convertible, out of range, not in the list, plus
the node's own cross-input check; cycles are rejected. Outputs whose ancestry has errors are dropped;
if none is left the workflow fails with ``prompt_outputs_failed_validation`` and every node's reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .registry import NodeRegistry
from .schema import Input, coerce, types_match


def _error(kind: str, message: str, details: str = "", extra: dict | None = None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


class WorkflowError(ValueError):
    """A workflow that cannot run. ``error`` and ``node_errors`` are ComfyUI's 400 response body parts."""

    def __init__(self, error: dict, node_errors: dict[str, dict] | None = None):
        self.error = error
        self.node_errors = node_errors or {}
        super().__init__(self.describe())

    def response(self) -> dict:
        return {"error": self.error, "node_errors": self.node_errors}

    def describe(self) -> str:
        lines = [self.error["message"] + (f": {self.error['details']}" if self.error.get("details") else "")]
        if self.node_errors:
            lines = [f"{self.error['message']}:"]
            for node_id, entry in self.node_errors.items():
                for err in entry["errors"]:
                    where = f"node {node_id} ({entry['class_type']})"
                    name = err.get("extra_info", {}).get("input_name")
                    if name:
                        where += f" input {name!r}"
                    detail = err["details"] if err["details"] and err["details"] != name else ""
                    lines.append(f"  {where}: {err['message']}" + (f" — {detail}" if detail else ""))
        return "\n".join(lines)


@dataclass
class ValidWorkflow:
    """A checked workflow: constants converted to their types, the outputs to run, and the errors of
    outputs that were dropped (ComfyUI's 200 response can carry those)."""

    nodes: dict[str, dict[str, Any]]  # node id → {"class_type", "inputs"} with coerced constants
    outputs: list[str]
    node_errors: dict[str, dict] = field(default_factory=dict)


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _check_input(
    inp: Input, value: Any, prompt: dict, registry: NodeRegistry, env: Any
) -> tuple[Any, list[dict]]:
    extra = {"input_name": inp.name, "input_config": inp.object_info(env) if inp.type != "COMBO" else None}
    if isinstance(value, list):
        if not is_link(value) or not isinstance(value[0], (str, int)):
            msg = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            return None, [_error("bad_linked_input", msg, inp.name, {**extra, "received_value": value})]
        source_id = str(value[0])
        source = prompt.get(source_id)
        if not isinstance(source, dict) or source.get("class_type") not in registry:
            msg = "Bad linked input, the linked node does not exist"
            return None, [_error("bad_linked_input", msg, f"{inp.name}: node {source_id}", extra)]
        outputs = registry[source["class_type"]].schema.outputs
        if not 0 <= value[1] < len(outputs):
            msg = "Bad linked input, the linked node has no such output"
            details = f"{inp.name}: node {source_id} has {len(outputs)} output(s), asked for slot {value[1]}"
            return None, [_error("bad_linked_input", msg, details, extra)]
        produced = outputs[value[1]].type
        if not types_match(produced, inp.type):
            details = f"{inp.name}, received_type({produced}) mismatch input_type({inp.type})"
            info = {**extra, "received_type": produced, "linked_node": [source_id, value[1]]}
            return None, [
                _error("return_type_mismatch", "Return type mismatch between linked nodes", details, info)
            ]
        return [source_id, value[1]], []
    try:
        converted = coerce(value, inp)
    except (TypeError, ValueError) as err:
        details = f"{inp.name}, {value!r}, {err}"
        return None, [_error("invalid_input_type", f"Failed to convert an input value to a {inp.type} value", details, extra)]  # fmt: skip
    if inp.min is not None and converted < inp.min:
        return None, [_error("value_smaller_than_min", f"Value {converted} smaller than min of {inp.min:g}", inp.name, extra)]  # fmt: skip
    if inp.max is not None and converted > inp.max:
        return None, [_error("value_bigger_than_max", f"Value {converted} bigger than max of {inp.max:g}", inp.name, extra)]  # fmt: skip
    if inp.type == "COMBO":
        choices = inp.choice_list(env)
        if converted not in choices:
            shown = choices if len(choices) <= 20 else f"{len(choices)} choices (see glassforge nodes)"
            details = f"{inp.name}: '{converted}' not in {shown}"
            return None, [_error("value_not_in_list", "Value not in list", details, {**extra, "received_value": converted})]  # fmt: skip
    return converted, []


def _find_cycle(prompt: dict, start: str) -> list[str] | None:
    """A dependency cycle reachable from ``start`` (as a node-id path), or None."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(node_id: str) -> list[str] | None:
        state[node_id] = 1
        path.append(node_id)
        node = prompt.get(node_id)
        if isinstance(node, dict):
            for value in (node.get("inputs") or {}).values():
                if is_link(value) and str(value[0]) in prompt:
                    src = str(value[0])
                    if state.get(src) == 1:
                        return [*path[path.index(src) :], src]
                    if src not in state and (found := visit(src)):
                        return found
        path.pop()
        state[node_id] = 2
        return None

    return visit(start)


def validate_workflow(prompt: Any, registry: NodeRegistry, env: Any = None) -> ValidWorkflow:
    if not isinstance(prompt, dict) or not prompt:
        raise WorkflowError(_error("no_prompt", "No prompt provided", "expected an object of node id → node"))
    bad_class = {}
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            msg = "Cannot execute because a node is missing the class_type property."
            bad_class[str(node_id)] = _error("invalid_prompt", msg, f"Node ID '#{node_id}'")
        elif class_type not in registry:
            msg = f"Cannot execute because node {class_type} does not exist."
            bad_class[str(node_id)] = _error("invalid_prompt", msg, f"Node ID '#{node_id}'")
    if bad_class:
        first = next(iter(bad_class.values()))
        node_errors = {
            k: {"errors": [e], "dependent_outputs": [], "class_type": (prompt[k] or {}).get("class_type")}
            for k, e in bad_class.items()
        }
        raise WorkflowError(first, node_errors)
    prompt = {str(k): v for k, v in prompt.items()}
    outputs = [k for k, v in prompt.items() if registry[v["class_type"]].schema.output_node]
    if not outputs:
        raise WorkflowError(
            _error("prompt_no_outputs", "Prompt has no outputs", "add a SaveImage or PreviewImage node")
        )

    checked: dict[str, dict] = {}
    errors: dict[str, list[dict]] = {}
    for out in outputs:
        cycle = _find_cycle(prompt, out)
        if cycle:
            details = " → ".join(f"#{n} {prompt[n]['class_type']}" for n in cycle)
            errors.setdefault(cycle[0], []).append(
                _error("dependency_cycle", "Dependency cycle detected", details)
            )
    stack = [o for o in outputs if o not in errors]
    while stack:
        node_id = stack.pop()
        if node_id in checked:
            continue
        node = prompt[node_id]
        nc = registry[node["class_type"]]
        given = node.get("inputs") or {}
        if not isinstance(given, dict):
            errors.setdefault(node_id, []).append(
                _error("invalid_prompt", "inputs must be an object", node_id)
            )
            checked[node_id] = {}
            continue
        inputs: dict[str, Any] = {}
        node_errors: list[dict] = []
        for inp in nc.schema.inputs:
            if inp.name not in given:
                if inp.optional:
                    continue
                if inp.default is not None and inp.type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                    inputs[inp.name] = inp.default  # ComfyUI requires it; a default is what users expect
                    continue
                node_errors.append(
                    _error(
                        "required_input_missing",
                        "Required input is missing",
                        inp.name,
                        {"input_name": inp.name},
                    )
                )
                continue
            value, errs = _check_input(inp, given[inp.name], prompt, registry, env)
            node_errors += errs
            raw = given[inp.name]
            if is_link(raw) and str(raw[0]) in prompt:
                stack.append(str(raw[0]))  # its own errors are reported too, even if this link is wrong
            if not errs:
                inputs[inp.name] = value
        if not node_errors and nc.check is not None:
            constants = {k: v for k, v in inputs.items() if not is_link(v)}
            message = nc.check(env, **constants)
            if message:
                node_errors.append(
                    _error("custom_validation_failed", "Custom validation failed for node", message)
                )
        if node_errors:
            errors.setdefault(node_id, []).extend(node_errors)
        checked[node_id] = {"class_type": node["class_type"], "inputs": inputs}

    def ancestors(node_id: str, seen: set[str]) -> set[str]:
        for value in (prompt[node_id].get("inputs") or {}).values():
            if is_link(value) and str(value[0]) in prompt and str(value[0]) not in seen:
                seen.add(str(value[0]))
                ancestors(str(value[0]), seen)
        return seen

    lineage = {o: ancestors(o, {o}) for o in outputs}
    node_errors = {
        node_id: {
            "errors": errs,
            "dependent_outputs": [o for o in outputs if node_id in lineage[o]],
            "class_type": prompt[node_id]["class_type"],
        }
        for node_id, errs in errors.items()
    }
    good = [o for o in outputs if not lineage[o] & errors.keys()]
    if not good:
        reasons = "\n".join(f"{e['message']}: {e['details']}" for errs in errors.values() for e in errs)
        raise WorkflowError(_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", reasons), node_errors)  # fmt: skip
    keep = set().union(*(lineage[o] for o in good))
    return ValidWorkflow({k: v for k, v in checked.items() if k in keep}, good, node_errors)
