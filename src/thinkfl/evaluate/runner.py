"""Run methods (agent policies and baselines) over every case of a store, resumably.

Per method, each finished case is appended to `OUT/<method>.jsonl` at once, so an
interrupted run resumes where it stopped; a half-written last line is ignored and redone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from thinkfl.agent import Budget, Finish, Trajectory, run_case
from thinkfl.baselines import BASELINES
from thinkfl.evaluate.metrics import CaseResult
from thinkfl.files import atomic_write, atomic_write_json, open_append
from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.models.factory import PolicyKind, make_policy
from thinkfl.telemetry import FailureCase, TelemetryStore
from thinkfl.tools import Toolbox

AGENTS = {kind.value for kind in PolicyKind}
CaseRunner = Callable[[FailureCase], Trajectory]


class EvaluationError(Exception):
    """A method name or option the runner cannot use; the message lists the choices."""


def method_names() -> list[str]:
    return sorted(AGENTS) + sorted(BASELINES)


def make_runner(
    method: str, store: TelemetryStore, budget: Budget, **policy_options: Any
) -> tuple[CaseRunner, bool]:
    """A function that runs one case with `method`, and whether it may run cases in parallel."""
    if method in BASELINES:
        baseline = BASELINES[method]

        def run_baseline(case: FailureCase) -> Trajectory:
            began = time.monotonic()
            ranking = baseline(store, case)
            return Trajectory(
                case_id=case.case_id,
                policy=method,
                truth=case.truth,
                ranking=ranking,
                finish=Finish.PRINTED,
                seconds=time.monotonic() - began,
            )

        return run_baseline, True
    if method not in AGENTS:
        raise EvaluationError(f"unknown method '{method}'. Methods: {', '.join(method_names())}")
    policy = make_policy(method, **policy_options)
    parallel = method in (PolicyKind.OPENAI, PolicyKind.EXPERT)  # local models run one at a time
    return (lambda case: run_case(Toolbox(store, case), policy, budget)), parallel


def load_done(path: Path) -> dict[str, Trajectory]:
    """Finished cases in a method's JSONL file; a truncated last line is skipped."""
    done: dict[str, Trajectory] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            trajectory = Trajectory.model_validate_json(line)
        except ValueError:
            continue
        done[trajectory.case_id] = trajectory
    return done


def _rewrite(path: Path, trajectories: dict[str, Trajectory]) -> None:
    """Drop any half-written line before appending again."""
    atomic_write(path, "".join(t.model_dump_json() + "\n" for t in trajectories.values()))


def run_method(
    method: str,
    store: TelemetryStore,
    out: Path,
    cases: list[FailureCase],
    budget: Budget,
    workers: int = 4,
    on_case: Callable[[Trajectory], None] = lambda _t: None,
    **policy_options: Any,
) -> list[Trajectory]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{method}.jsonl"
    done = load_done(path)
    _rewrite(path, done)
    todo = [c for c in cases if c.case_id not in done]
    for case_id in [c.case_id for c in cases if c.case_id in done]:
        on_case(done[case_id])
    if todo:
        runner, parallel = make_runner(method, store, budget, **policy_options)
        lock = threading.Lock()

        def finish(trajectory: Trajectory) -> None:
            with lock, open_append(path) as handle:
                handle.write(trajectory.model_dump_json() + "\n")
            done[trajectory.case_id] = trajectory
            on_case(trajectory)

        if parallel and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                for future in as_completed([pool.submit(runner, c) for c in todo]):
                    finish(future.result())
        else:
            for case in todo:
                finish(runner(case))
    return [done[c.case_id] for c in cases]


def case_results(
    method: str, trajectories: list[Trajectory], store: TelemetryStore
) -> list[CaseResult]:
    entities = store.entities()
    by_id = {c.case_id: c for c in store.cases()}
    results = []
    for t in trajectories:
        truth = by_id[t.case_id].truth
        if truth is None:  # an incident nobody labelled: nothing to score it against
            continue
        results.append(
            CaseResult(
                method=method,
                case_id=t.case_id,
                fault_type=truth.fault_type,
                level=truth.level.value,
                rank_strict=rank_of_truth(t.ranking, truth, entities, MatchLevel.STRICT),
                rank_service=rank_of_truth(t.ranking, truth, entities, MatchLevel.SERVICE),
                seconds=t.seconds,
                tokens=t.prompt_tokens + t.completion_tokens,
                tool_calls=len(t.explored),
                finish=t.finish,
            )
        )
    return results


def write_json(path: Path, payload: object) -> None:
    atomic_write_json(path, payload)
