"""Where a teacher dialogue's tokens go: the expert on every case of each store, each message
of its final dialogue counted in the default model's tokens and summed by part (system
prompt, case prompt, the model's calls, each tool's observations, nudges), so the levers of
the student issue (compact prompt, compact observations, handles, fresh sub-contexts) are
chosen on numbers.

    python bench/dialogue_budget.py STORE [STORE ...] [--cases N] [--tokens-of MODEL]
        [--dialogue full|compact]

Per store: dialogue length p50/max, and per part its share of all tokens, its tokens per
dialogue (mean) and per message (p50/max). A message's count is what it adds to the rendered
dialogue (its role header included), so the parts add up to the whole.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from heldout import dialogue_tokens
from machine import cpu_line
from thinkfl.agent import Budget, ExpertPolicy, Trajectory, run_case
from thinkfl.agent.protocol import DialogueStyle
from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.models.registry import DEFAULT_MODEL
from thinkfl.telemetry import TelemetryStore
from thinkfl.tools import Toolbox


def part_of(trajectory: Trajectory, index: int) -> str:
    """The part a message of the dialogue belongs to."""
    message = trajectory.messages[index]
    if message.role == "system":
        return "system prompt"
    if message.role == "assistant":
        return "calls (assistant)"
    if message.is_observation:
        # observation_message: "<tool_response>\n{tool}: {text}\n</tool_response>"
        lines = message.content.split("\n", 2)
        tool = lines[1].split(":", 1)[0] if len(lines) > 1 else "?"
        return f"observation: {tool}"
    return "case prompt" if index == 1 else "nudges (user)"


def budget(path: Path, cases: int, count, style: DialogueStyle) -> None:
    store = TelemetryStore.open(path)
    totals: list[int] = []
    by_part: dict[str, list[int]] = defaultdict(list)
    per_dialogue: dict[str, int] = defaultdict(int)
    selected = store.cases()[: cases or None]
    entities, first = store.entities(), 0
    for case in selected:
        trajectory = run_case(Toolbox(store, case), ExpertPolicy(), Budget(dialogue=style))
        first += rank_of_truth(trajectory.ranking, case.truth, entities, MatchLevel.STRICT) == 0
        totals.append(count(trajectory.messages))
        before = 0
        for index in range(len(trajectory.messages)):
            # what this message adds to the rendered dialogue (a chat template may insert a
            # default system prompt when a message is rendered alone)
            upto = count(trajectory.messages[: index + 1])
            tokens, before = upto - before, upto
            by_part[part_of(trajectory, index)].append(tokens)
            per_dialogue[part_of(trajectory, index)] += tokens
    grand = sum(per_dialogue.values())
    print(f"\n### {path.name}: {len(selected)} {style.value} dialogues of the expert")
    print(
        f"R@1 {first / len(selected):.2f}; "
        f"tokens per dialogue p50 {statistics.median(totals):.0f}, max {max(totals)}; "
        f"messages per dialogue {sum(map(len, by_part.values())) / len(selected):.1f}"
    )
    print("| part | share | tokens / dialogue | tokens / message p50 / max |")
    print("|---|---:|---:|---:|")
    for part, tokens in sorted(per_dialogue.items(), key=lambda item: -item[1]):
        counts = by_part[part]
        print(
            f"| {part} | {tokens / grand:.0%} | {tokens / len(selected):.0f} | "
            f"{statistics.median(counts):.0f} / {max(counts)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, nargs="+")
    parser.add_argument("--cases", type=int, default=0, help="first N cases per store (0: all)")
    parser.add_argument("--tokens-of", default=DEFAULT_MODEL, help="registry model to count with")
    parser.add_argument("--dialogue", type=DialogueStyle, default=DialogueStyle.FULL)
    args = parser.parse_args()
    print(cpu_line())
    count = dialogue_tokens(args.tokens_of)
    for path in args.store:
        budget(path, args.cases, count, args.dialogue)


if __name__ == "__main__":
    main()
