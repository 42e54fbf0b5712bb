"""The Recursion-of-Thought loop (Algorithm 1 of the paper): one function for every use.

`run_case` drives any policy (LLM backend or the expert) through the tools for one case and
returns a `Trajectory`. Inference, evaluation and training rollouts all call it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from thinkfl.agent.policy import Policy, Reply, Turn
from thinkfl.agent.protocol import (
    NO_CALL,
    REPEATED,
    RETHINK,
    DialogueStyle,
    ToolCall,
    force_print_nudge,
    observation_message,
    parse_tool_calls,
    system_prompt,
    user_prompt,
)
from thinkfl.agent.seen import answer_from_steps
from thinkfl.agent.trajectory import Finish, Message, Step, Trajectory
from thinkfl.telemetry import candidates
from thinkfl.tools import TOOL_SPECS, Observation, Toolbox
from thinkfl.tools.compact import compact_text


class Budget(BaseModel):
    """Limits of one investigation. Depth counts exploring tool calls (D_max of the paper)."""

    max_depth: int = Field(10, ge=1, description="exploring tool calls before a forced print")
    hard_cap: int = Field(20, ge=1, description="model replies at most, nudges included")
    max_calls_per_turn: int = Field(3, ge=1, description="tool calls honoured in one reply")
    wall_clock_s: float = Field(300.0, gt=0, description="seconds for the whole case")
    max_total_tokens: int = Field(60_000, ge=1, description="prompt + completion tokens")
    max_tokens_per_turn: int = Field(384, ge=16, description="completion tokens per reply")
    temperature: float = Field(0.0, ge=0)
    rethink: bool = Field(False, description="ask once to look deeper before an early print")
    rethink_min_calls: int = Field(3, ge=0, description="an earlier print triggers the rethink")
    dialogue: DialogueStyle = Field(
        DialogueStyle.FULL,
        description="full: the tool manual and long observations; compact: a short prompt "
        "and compact observations, for a model trained on them",
    )
    fallback_answer: bool = Field(
        True,
        description="when the model ends without a usable answer, rank what the observations "
        "pointed at (finish 'fallback'); off for training rollouts, so rewards judge the "
        "model's own answers",
    )


PRINT_ONLY = [spec for spec in TOOL_SPECS if spec.name == "print_results"]
StepCallback = Callable[[Step], None]


@dataclass(frozen=True)
class TurnDone:
    """One reply of the policy, as a person watching the run would want to hear of it."""

    turn: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt_seconds: float  # of `seconds`, reading the prompt (0 where the backend cannot say)
    text: str  # the reply as written (a call, or the answer)


TurnCallback = Callable[[TurnDone], None]


class _OutOfTime(Exception):
    """The case's wall clock ran out while the policy was still answering."""


def _respond_within(policy: Policy, turn: Turn, seconds: float) -> Reply:
    """`policy.respond(turn)`, waited for at most `seconds`.

    A backend stuck past the case's wall clock ends the case instead of hanging it. The stuck
    call cannot be interrupted; it finishes in its own daemon thread, and the policy's lock
    keeps the next call from running beside it (no backend here is safe for that).
    """
    if seconds <= 0:
        raise _OutOfTime
    lock = policy.__dict__.setdefault("_respond_lock", threading.Lock())
    outcome: dict[str, object] = {}

    def work() -> None:
        with lock:
            try:
                outcome["reply"] = policy.respond(turn)
            except BaseException as error:  # handed to the waiting thread
                outcome["error"] = error

    worker = threading.Thread(target=work, name=f"respond-{policy.name}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _OutOfTime
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["reply"]  # type: ignore[return-value]


def _render_call(call: ToolCall) -> str:
    payload = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"<tool_call>{payload}</tool_call>"


class _Run:
    """The mutable state of one run; `run_case` is the public entry point."""

    def __init__(
        self,
        toolbox: Toolbox,
        policy: Policy,
        budget: Budget,
        on_step: StepCallback | None,
        on_turn: TurnCallback | None = None,
    ):
        self.toolbox, self.policy, self.budget, self.on_step = toolbox, policy, budget, on_step
        self.on_turn = on_turn
        case = toolbox.case
        self.trajectory = Trajectory(
            case_id=case.case_id,
            policy=policy.name,
            truth=case.truth,
            messages=[
                Message(role="system", content=system_prompt(style=budget.dialogue)),
                Message(role="user", content=user_prompt(case, budget.dialogue)),
            ],
        )
        self.seen: set[str] = set()
        self.depth = 0
        self.rethought = False
        self.forced = False
        self.started = time.monotonic()

    # --- talking to the policy -------------------------------------------------------------
    def ask(self, tools: list[Any]) -> Reply:
        t = self.trajectory
        turn = Turn(
            case=self.toolbox.case,
            messages=t.messages,
            steps=t.steps,
            tools=tools,
            temperature=self.budget.temperature,
            max_tokens=self.budget.max_tokens_per_turn,
            dialogue=self.budget.dialogue,
        )
        began = time.monotonic()
        remaining = self.budget.wall_clock_s - (began - self.started)
        try:
            reply = _respond_within(self.policy, turn, remaining)
        finally:
            t.policy_seconds += time.monotonic() - began
        t.prompt_tokens += reply.prompt_tokens
        t.completion_tokens += reply.completion_tokens
        t.prompt_seconds += reply.prompt_seconds
        t.turns += 1
        if self.on_turn:
            self.on_turn(
                TurnDone(
                    turn=t.turns,
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    seconds=time.monotonic() - began,
                    prompt_seconds=reply.prompt_seconds,
                    text=reply.text,
                )
            )
        native = [c for c in reply.tool_calls if c.id] if self.policy.native_tools else []
        calls = reply.tool_calls or parse_tool_calls(reply.text)
        content = reply.text or "\n".join(_render_call(c) for c in calls)
        t.messages.append(
            Message(
                role="assistant",
                content=content,
                tool_calls=[
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in native
                ]
                or None,
            )
        )
        reply.tool_calls = calls
        return reply

    def observe(
        self, call: ToolCall, observation: Observation, repeated: bool, seconds: float
    ) -> None:
        t = self.trajectory
        step = Step(
            turn=t.turns,
            tool=call.name,
            arguments=call.arguments,
            observation=observation.text,
            ok=observation.ok,
            repeated=repeated,
            seconds=seconds,
            data=observation.data,
        )
        t.steps.append(step)
        t.tool_seconds += seconds
        # the step keeps the long text for people; the model reads its dialogue's rendering
        shown = (
            compact_text(observation)
            if self.budget.dialogue == DialogueStyle.COMPACT
            else observation.text
        )
        if self.policy.native_tools and call.id:
            message = Message(role="tool", content=shown, tool_call_id=call.id, is_observation=True)
        else:
            message = Message(
                role="user", content=observation_message(call.name, shown), is_observation=True
            )
        t.messages.append(message)
        if self.on_step:
            self.on_step(step)

    def repeated_hint(self) -> str:
        """The repeat notice, with the slowest child spans seen but not yet searched."""
        searched = {s.arguments.get("parent_span_id") for s in self.trajectory.steps}
        searched |= {s.data.get("parent") for s in self.trajectory.steps}
        unexplored = [
            row
            for s in self.trajectory.steps
            for row in s.data.get("rows", [])
            if row["span_id"] not in searched
        ]
        unexplored.sort(key=lambda r: -r["duration_us"])
        if not unexplored:
            return REPEATED
        ids = ", ".join(f"{r['span_id']} ({r['service']})" for r in unexplored[:3])
        return f"{REPEATED} Spans seen but not searched yet: {ids}"

    def nudge(self, text: str) -> None:
        self.trajectory.messages.append(Message(role="user", content=text, is_observation=True))

    # --- the loop --------------------------------------------------------------------------
    def out_of_budget(self) -> Finish | None:
        t = self.trajectory
        if time.monotonic() - self.started > self.budget.wall_clock_s:
            return Finish.WALL_CLOCK
        if t.prompt_tokens + t.completion_tokens > self.budget.max_total_tokens:
            return Finish.TOKENS
        return None

    def call_tool(self, call: ToolCall) -> bool:
        """Run one call; True when it printed a usable ranking (the case is finished)."""
        if call.name == "print_results":
            early = len(self.trajectory.explored) < self.budget.rethink_min_calls
            if self.budget.rethink and early and not self.rethought:
                self.rethought = True
                self.nudge(RETHINK)
                return False
        key = json.dumps([call.name, call.arguments], sort_keys=True, default=str)
        repeated = key in self.seen and call.name != "print_results"
        self.seen.add(key)
        began = time.monotonic()
        if repeated:
            observation = Observation(tool=call.name, text=self.repeated_hint(), ok=False)
        else:
            observation = self.toolbox.call(call.name, call.arguments)
        self.observe(call, observation, repeated, time.monotonic() - began)
        if call.name == "print_results":
            ranking = observation.data.get("ranking", [])
            # While exploring, an answer naming unknown components goes back to be fixed;
            # the forced final answer is taken as it is (the grader counts its mistakes).
            if ranking and (observation.ok or self.forced):
                self.trajectory.ranking = candidates(ranking)
                return True
            return False
        self.depth += 1
        return False

    def explore(self) -> Finish | None:
        """Turns until a print, the depth budget or another limit; returns why it stopped."""
        while self.trajectory.turns < self.budget.hard_cap and self.depth < self.budget.max_depth:
            stop = self.out_of_budget()
            if stop:
                return stop
            reply = self.ask(TOOL_SPECS)
            if not reply.tool_calls:
                self.trajectory.replies_without_call += 1
                self.nudge(NO_CALL)
                continue
            for call in reply.tool_calls[: self.budget.max_calls_per_turn]:
                if self.call_tool(call):
                    return Finish.PRINTED
                if call.name == "print_results":
                    break  # a rethink nudge or an unusable print: let the model answer it
        return None

    def force_print(self) -> Finish:
        self.forced = True
        seen = answer_from_steps(self.trajectory.steps, self.toolbox.case.entry_service)
        self.nudge(force_print_nudge(seen))
        reply = self.ask(PRINT_ONLY)
        prints = [c for c in reply.tool_calls if c.name == "print_results"]
        if not reply.tool_calls:
            self.trajectory.replies_without_call += 1
        if prints and self.call_tool(prints[0]):
            return Finish.FORCED
        if self.budget.fallback_answer:
            ranking = answer_from_steps(self.trajectory.steps, self.toolbox.case.entry_service)
            if ranking:
                self.trajectory.ranking = candidates(ranking)
                return Finish.FALLBACK
        return Finish.NO_ANSWER

    def run(self) -> Trajectory:
        t = self.trajectory
        try:
            stop = self.explore()
            t.finish = stop if stop == Finish.PRINTED else self.force_print()
            if stop in (Finish.WALL_CLOCK, Finish.TOKENS) and t.finish == Finish.NO_ANSWER:
                t.finish = stop
        except _OutOfTime:
            t.finish = Finish.WALL_CLOCK
            if self.budget.fallback_answer:
                t.ranking = candidates(answer_from_steps(t.steps, self.toolbox.case.entry_service))
        except Exception as error:  # a backend failure ends this case, not the evaluation
            t.error = f"{type(error).__name__}: {error}"
            t.finish = Finish.ERROR
        if self.toolbox.store_failures:  # a damaged store never answers
            t.store_failures = list(self.toolbox.store_failures)
            t.error = f"{t.store_failures[0]}. Fix: check it with `thinkfl info`, ingest again"
            t.finish, t.ranking = Finish.ERROR, []
        t.seconds = time.monotonic() - self.started
        return t


def run_case(
    toolbox: Toolbox,
    policy: Policy,
    budget: Budget | None = None,
    on_step: StepCallback | None = None,
    on_turn: TurnCallback | None = None,
) -> Trajectory:
    """Investigate `toolbox.case` with `policy`; always returns a finished Trajectory.
    `on_step` hears of each tool call, `on_turn` of each reply of the policy."""
    return _Run(toolbox, policy, budget or Budget(), on_step, on_turn).run()
