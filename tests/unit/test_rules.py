"""The workflow rules as a pure function: what ``next_actions`` asks for, case by case."""

from __future__ import annotations

from flowmesh_core.control.rules import (
    FailNode,
    NodeView,
    RecordResult,
    StartNode,
    downstream,
    next_actions,
)
from flowmesh_core.models import Workflow
from flowmesh_core.models.api import NodeState

DIGEST = "sha256:" + "a" * 64


def chain() -> Workflow:
    """gen -> score -> top; gen -> embed."""
    return Workflow.model_validate(
        {
            "nodes": {
                "gen": {"kind": "data.template", "inputs": {"records": [{"x": 1}]}},
                "score": {"kind": "data.template", "inputs": {"records": {"ref": "gen"}}},
                "top": {"kind": "data.template", "inputs": {"records": {"ref": "score"}}},
                "embed": {"kind": "data.template", "inputs": {"records": {"ref": "gen"}}},
            }
        }
    )


def started(remaining: int = 1, error: str | None = None) -> NodeView:
    return NodeView(started=True, state=NodeState.PENDING, remaining=remaining, error=error)


def done(digest: str = DIGEST) -> NodeView:
    return NodeView(started=True, state=NodeState.DONE, result_digest=digest)


def test_a_workflow_nobody_started_starts_its_roots_only() -> None:
    assert next_actions(chain(), {}) == [StartNode("gen", {})]


def test_a_started_node_with_items_left_needs_nothing() -> None:
    assert next_actions(chain(), {"gen": started(remaining=3)}) == []


def test_a_node_whose_items_are_all_done_records_its_result() -> None:
    assert next_actions(chain(), {"gen": started(remaining=0)}) == [RecordResult("gen")]


def test_a_done_node_starts_every_reader_with_its_digest() -> None:
    actions = next_actions(chain(), {"gen": done()})
    assert sorted(actions, key=str) == sorted(
        [StartNode("score", {"records": DIGEST}), StartNode("embed", {"records": DIGEST})],
        key=str,
    )


def test_a_reader_waits_until_every_node_it_reads_is_done() -> None:
    workflow = Workflow.model_validate(
        {
            "nodes": {
                "a": {"kind": "data.template", "inputs": {"records": [1]}},
                "b": {"kind": "data.template", "inputs": {"records": [2]}},
                "join": {
                    "kind": "data.template",
                    "inputs": {"records": {"ref": "a"}, "more": {"ref": "b"}},
                },
            }
        }
    )
    assert next_actions(workflow, {"a": done(), "b": started()}) == []
    both = next_actions(workflow, {"a": done("sha256:" + "1" * 64), "b": done()})
    assert both == [StartNode("join", {"records": "sha256:" + "1" * 64, "more": DIGEST})]


def test_a_failed_item_fails_the_node_and_what_is_downstream_but_not_the_rest() -> None:
    actions = next_actions(
        chain(), {"gen": done(), "score": started(error="boom"), "embed": done()}
    )
    assert actions == [FailNode("score", "boom", ("top",))]


def test_a_failure_wins_over_a_node_whose_items_all_ended() -> None:
    (action,) = next_actions(chain(), {"gen": started(remaining=0, error="boom")})
    assert isinstance(action, FailNode)
    assert (action.node, action.error) == ("gen", "boom")
    assert set(action.downstream) == {"score", "top", "embed"}


def test_final_nodes_need_nothing_and_asking_again_is_the_same() -> None:
    views = {name: done() for name in chain().nodes}
    assert next_actions(chain(), views) == []
    half = {"gen": done(), "score": started(remaining=0)}
    assert next_actions(chain(), half) == next_actions(chain(), half)


def test_node_view_reads_a_stored_record() -> None:
    assert NodeView.from_record({}) == NodeView()
    view = NodeView.from_record(
        {"op_key": "k", "state": "pending", "remaining": "2", "items_total": "3"}
    )
    assert (view.started, view.state, view.remaining, view.final) == (
        True,
        NodeState.PENDING,
        2,
        False,
    )


def test_downstream_is_transitive_and_in_topological_order() -> None:
    below = downstream(chain(), "gen")
    assert set(below) == {"score", "top", "embed"}
    assert below.index("score") < below.index("top")
    assert downstream(chain(), "score") == ["top"]
    assert downstream(chain(), "top") == []
