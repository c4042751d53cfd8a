"""The workflow engine with stub nodes: validation errors, caching, cycles, interrupt, events."""

import threading

import pytest

from glassforge.graph.events import Executing, ExecutionCached, ExecutionError, ExecutionInterrupted
from glassforge.graph.executor import Executor
from glassforge.graph.registry import NodeRegistry, NodeResult
from glassforge.graph.schema import Input, NodeSchema, Output, SchemaError
from glassforge.graph.validate import WorkflowError

CALLS: list[str] = []


def stub_registry() -> NodeRegistry:
    reg = NodeRegistry()

    @reg.node(NodeSchema("Number", "Number", "test", "a constant", (Input("value", "INT", min=0, max=100),),
                         (Output("INT"),)))  # fmt: skip
    def number(ctx, value):
        CALLS.append(f"Number:{ctx.node_id}")
        return (value,)

    @reg.node(
        NodeSchema("Add", "Add", "test", "a + b", (Input("a", "INT"), Input("b", "INT")), (Output("INT"),))
    )
    def add(ctx, a, b):
        CALLS.append(f"Add:{ctx.node_id}")
        return (a + b,)

    @reg.node(
        NodeSchema(
            "Pick",
            "Pick",
            "test",
            "a choice",
            (Input("word", "COMBO", choices=["cat", "dog"]),),
            (Output("STRING"),),
        ),
    )
    def pick(ctx, word):
        CALLS.append(f"Pick:{ctx.node_id}")
        return (word,)

    @reg.node(NodeSchema("Show", "Show", "test", "an output", (Input("value", "INT"),), (), output_node=True))
    def show(ctx, value):
        CALLS.append(f"Show:{ctx.node_id}")
        return NodeResult((), {"text": [str(value)]})

    @reg.node(NodeSchema("Slow", "Slow", "test", "steps", (Input("value", "INT"),), (Output("INT"),)))
    def slow(ctx, value):
        for i in range(5):
            ctx.check_interrupt()
            ctx.progress(i + 1, 5)
            if i == 1:
                ctx.interrupt.set()  # as if a user pressed Interrupt during step 2
        return (value,)

    @reg.node(NodeSchema("Fail", "Fail", "test", "raises", (Input("value", "INT"),), (Output("INT"),)))
    def fail(ctx, value):
        raise RuntimeError("boom")

    return reg


def graph(a=1, b=2):
    return {
        "1": {"class_type": "Number", "inputs": {"value": a}},
        "2": {"class_type": "Number", "inputs": {"value": b}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
    }


def test_runs_in_dependency_order_and_returns_ui():
    CALLS.clear()
    result = Executor(stub_registry()).run(graph(1, 2))
    assert result.status == "success" and result.outputs == {"4": {"text": ["3"]}}
    assert CALLS.index("Add:3") > max(CALLS.index("Number:1"), CALLS.index("Number:2"))
    assert CALLS[-1] == "Show:4"


def test_changed_constant_reruns_only_it_and_downstream():
    ex = Executor(stub_registry())
    ex.run(graph(1, 2))
    CALLS.clear()
    events = []
    result = ex.run(graph(1, 5), on_event=events.append)
    assert CALLS == ["Number:2", "Add:3", "Show:4"]
    assert result.cached == ["1"] and result.outputs["4"] == {"text": ["6"]}
    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert cached.nodes == ("1",) and cached.message()["type"] == "execution_cached"
    assert [e.node for e in events if isinstance(e, Executing)] == ["2", "3", "4", None]


def test_identical_rerun_runs_nothing_but_reports_outputs():
    ex = Executor(stub_registry())
    ex.run(graph())
    CALLS.clear()
    result = ex.run(graph())
    assert CALLS == [] and result.executed == [] and result.outputs["4"] == {"text": ["3"]}


def test_same_subgraph_under_other_ids_shares_the_cache():
    ex = Executor(stub_registry())
    ex.run(graph())
    renamed = {
        "a": {"class_type": "Number", "inputs": {"value": 1}},
        "b": {"class_type": "Number", "inputs": {"value": 2}},
        "c": {"class_type": "Add", "inputs": {"a": ["a", 0], "b": ["b", 0]}},
        "d": {"class_type": "Show", "inputs": {"value": ["c", 0]}},
    }
    CALLS.clear()
    assert ex.run(renamed).cached == ["d"] and CALLS == []


def test_validation_reports_every_error_at_once():
    bad = {
        "1": {"class_type": "Number", "inputs": {"value": 101}},
        "2": {"class_type": "Number", "inputs": {}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["5", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
        "6": {"class_type": "Pick", "inputs": {"word": "bird"}},
        "7": {"class_type": "Show", "inputs": {"value": ["6", 0]}},
        "8": {"class_type": "Number", "inputs": {"value": "ten"}},
        "9": {"class_type": "Show", "inputs": {"value": ["8", 0]}},
    }
    with pytest.raises(WorkflowError) as info:
        Executor(stub_registry()).run(bad)
    errors = {k: [e["type"] for e in v["errors"]] for k, v in info.value.node_errors.items()}
    assert errors == {
        "1": ["value_bigger_than_max"],
        "3": ["bad_linked_input"],
        "6": ["value_not_in_list"],
        "7": ["return_type_mismatch"],
        "8": ["invalid_input_type"],
    }
    assert info.value.error["type"] == "prompt_outputs_failed_validation"
    assert info.value.node_errors["1"]["dependent_outputs"] == ["4"]
    text = str(info.value)
    assert "node 1 (Number) input 'value': Value 101 bigger than max of 100" in text
    assert "'bird' not in ['cat', 'dog']" in text


def test_missing_required_input_and_unknown_class():
    with pytest.raises(WorkflowError) as info:
        Executor(stub_registry()).run({"1": {"class_type": "Add", "inputs": {"a": 1}},
                                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})  # fmt: skip
    (missing,) = info.value.node_errors["1"]["errors"]
    assert missing["type"] == "required_input_missing" and missing["details"] == "b"
    with pytest.raises(WorkflowError, match="node Nope does not exist"):
        Executor(stub_registry()).run({"1": {"class_type": "Nope", "inputs": {}}})
    with pytest.raises(WorkflowError, match="Prompt has no outputs"):
        Executor(stub_registry()).run({"1": {"class_type": "Number", "inputs": {"value": 1}}})


def test_valid_outputs_run_when_another_output_is_invalid():
    wf = {**graph(), "6": {"class_type": "Pick", "inputs": {"word": "bird"}},
          "7": {"class_type": "Show", "inputs": {"value": ["6", 0]}}}  # fmt: skip
    result = Executor(stub_registry()).run(wf)
    assert result.status == "success" and list(result.outputs) == ["4"] and "6" in result.node_errors


def test_cycles_are_rejected():
    wf = {
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["2", 0]}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
    }
    with pytest.raises(WorkflowError, match="Dependency cycle") as info:
        Executor(stub_registry()).run(wf)
    assert "#1 Add → #2 Add → #1 Add" in str(info.value)


def test_interrupt_between_steps_stops_the_run_and_keeps_the_cache_consistent():
    wf = {
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Slow", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    events = []
    ex = Executor(stub_registry())
    result = ex.run(wf, on_event=events.append)
    assert result.status == "interrupted" and result.executed == ["1"]
    stop = next(e for e in events if isinstance(e, ExecutionInterrupted))
    assert stop.node_id == "2" and stop.executed == ("1",)
    assert [e.value for e in events if e.type == "progress"] == [1, 2]
    again = ex.run(wf, interrupt=threading.Event())  # a fresh flag: the interrupted node re-runs
    assert again.cached == ["1"]


def test_interrupt_before_start():
    flag = threading.Event()
    flag.set()
    result = Executor(stub_registry()).run(graph(), interrupt=flag)
    assert result.status == "interrupted" and result.executed == []


def test_a_failing_node_reports_an_execution_error():
    wf = {
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    events = []
    result = Executor(stub_registry()).run(wf, on_event=events.append)
    assert result.status == "error" and "boom" in result.error
    err = next(e for e in events if isinstance(e, ExecutionError)).message()
    assert err["type"] == "execution_error" and err["data"]["node_id"] == "2"
    assert err["data"]["exception_message"] == "boom" and err["data"]["executed"] == ["1"]


def test_schema_is_checked_and_describes_object_info():
    with pytest.raises(SchemaError):
        NodeSchema("X", "X", "t", "", (Input("a", "INT"), Input("a", "INT")))
    with pytest.raises(SchemaError):
        NodeSchema("X", "X", "t", "", (Input("a", "COMBO"),))
    info = stub_registry().object_info()
    assert info["Number"]["input"]["required"]["value"] == ["INT", {"min": 0, "max": 100}]
    assert info["Pick"]["input"]["required"]["word"] == [["cat", "dog"], {}]
    assert info["Show"]["output_node"] is True and info["Add"]["output"] == ["INT"]
