"""The round's table of steps (flows/round_steps.py) agrees with the store's round states, and its typed step
reports carry what the round summary records."""

from __future__ import annotations

import pytest

from flows.round_steps import ROUND_STEPS, STEP_OF_STATE, StepReport, TaskStep, chunks
from tasks.results import RelaxChunkRecord, TaskRecord
from tasks.store import ROUND_STATES


def test_the_steps_reach_the_store_states_in_order():
    assert ("pending", *(s.state for s in ROUND_STEPS)) == ROUND_STATES
    assert [s.name for s in ROUND_STEPS] == ["generate", "filter", "acquire", "relax", "evaluate", "dft", "learn",
                                             "feedback"]
    assert sum(s.share for s in ROUND_STEPS) == pytest.approx(100.0)
    assert STEP_OF_STATE["relaxed"] == "relax" and STEP_OF_STATE["completed"] == "feedback"
    # inputs-keyed caching only where a step's output depends on its inputs alone
    assert {s.name for s in ROUND_STEPS if isinstance(s.run, TaskStep) and s.run.cached} == {"generate", "filter"}


def test_step_reports_add_and_record_their_timing():
    a = StepReport.of(TaskRecord(start=1.0, end=3.0, compute_s=2.0), TaskRecord(start=2.0, end=5.0, compute_s=3.0))
    b = StepReport.of(RelaxChunkRecord(start=6.0, end=7.0, compute_s=1.0, kind="candidate", relaxed=2, reused=0,
                                       skipped=1, converged=2))
    total = a + b
    assert total.intervals == ((1.0, 3.0), (2.0, 5.0), (6.0, 7.0)) and total.compute_s == 6.0
    assert total.timing(9.5) == {"wall_s": 9.5, "intervals": [[1.0, 3.0], [2.0, 5.0], [6.0, 7.0]], "compute_s": 6.0}
    assert StepReport.of() == StepReport() and StepReport().timing(0.0)["intervals"] == []


def test_chunks_keep_order_and_size():
    assert chunks(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert chunks([], 4) == []
