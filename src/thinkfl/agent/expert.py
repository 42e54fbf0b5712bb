"""The expert policy: a deterministic investigator that uses the same tools through the same loop.

It is the SFT teacher and a strong non-LLM baseline. Each reply is a pure function of the
steps so far (no hidden state), so a run can be replayed and resumed.

Version 2 follows the evidence the tools show (docs/evidence.md):
1. Descend the call tree from the entry span: at each span take the child whose own
   component or subtree carries the strongest evidence (a failing child first); descend
   into it while the evidence lies deeper than the child itself (`deeper: ...` in the
   observation), and stop at the child whose own component carries it — across a
   caller->callee gap too, since the gap is the callee's evidence. Where no child shows
   evidence, fall back to the slow path: the failing child, else the one that explains
   `explain_share` of its parent's excess latency.
2. Check logs and metrics of the suspects: components with evidence, strongest first, then
   the services on the path, deepest first.
3. Rank: components by the evidence score the observations showed for them (trace flags,
   and the scores of a component and what it covers in the log and metric observations:
   a node's score shows there), a pod followed by its service; then the other suspects and
   the path (deepest first).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from thinkfl.agent.policy import Reply, Turn
from thinkfl.agent.protocol import DialogueStyle, ToolCall
from thinkfl.agent.seen import evidence_seen, ranked_by_evidence, span_handles
from thinkfl.agent.trajectory import Step


class ExpertSettings(BaseModel):
    explain_share: float = Field(
        0.5, gt=0, le=1, description="descend when a child takes this share"
    )
    max_trace_calls: int = Field(5, ge=1, description="leaves room to check and print within D_max")
    suspects_checked: int = Field(2, ge=1, description="services whose logs and metrics are read")
    min_candidates: int = Field(3, ge=1)


def _call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[ToolCall(name=name, arguments=arguments)])


class ExpertPolicy:
    name = "expert"
    version = 2
    native_tools = False

    def __init__(self, settings: ExpertSettings | None = None) -> None:
        self.settings = settings or ExpertSettings()

    def respond(self, turn: Turn) -> Reply:
        steps = [s for s in turn.steps if s.ok]
        only_print = all(spec.name == "print_results" for spec in turn.tools)
        path = self._path(turn.case.entry_span_id, steps)
        if not only_print:
            following = self._next_span(turn.case.entry_span_id, path, steps)
            if following is not None:
                if turn.dialogue == DialogueStyle.COMPACT:  # by the handle it was shown with
                    following = span_handles(steps).get(following, following)
                return _call("search_traces", parent_span_id=following)
            check = self._next_check(path, steps, turn)
            if check is not None:
                return check
        return _call(
            "print_results", root_causes=self._ranking(path, steps, turn.case.entry_service)
        )

    # --- exploring -----------------------------------------------------------------------
    def _path(self, entry: str, steps: list[Step]) -> list[dict[str, Any]]:
        """The spans descended so far, root first, as rows {span_id, service, pod, ...}.

        At each span: the evidence rule (module doc) when a child shows evidence; else the
        failing children, else those that take at least `explain_share` of its time,
        slowest first, a candidate already seen to be a leaf passed over while another
        remains, so a slow internal leaf (a handler span) does not hide the sibling that
        carries the call chain.
        """
        by_parent = {
            s.data["parent"]: s.data
            for s in steps
            if s.tool == "search_traces" and "parent" in s.data
        }
        path: list[dict[str, Any]] = []
        current = entry
        walked: set[str] = set()  # parent links may loop (a span its own child, A -> B -> A)
        while current in by_parent and current not in walked:
            walked.add(current)
            guided = self._by_evidence(by_parent[current])
            if guided == "here":
                break  # the current span's own component carries the strongest evidence
            if isinstance(guided, tuple):
                chosen, deeper = guided
                path.append(chosen)
                if not deeper or not chosen.get("below_span"):
                    break
                # jump straight to the shallowest span of the component the evidence names
                target = chosen["below_span"]
                if target in by_parent:
                    where = by_parent[target].get("where", {})
                    path.append({"span_id": target, "status": "unset", **where})
                else:
                    path.append({"span_id": target, "service": chosen["below_service"]})
                current = target
                continue
            candidates = self._candidates(by_parent[current])
            if not candidates:
                break
            open_ones = [
                c for c in candidates if by_parent.get(c["span_id"], {"rows": [1]})["rows"]
            ]
            chosen = open_ones[0] if open_ones else candidates[0]
            path.append(chosen)
            if not open_ones:
                break
            current = chosen["span_id"]
        return path

    def _by_evidence(self, data: dict[str, Any]) -> tuple[dict[str, Any], bool] | str | None:
        """The child carrying the strongest evidence (its own or below it) and whether the
        evidence lies deeper; "here" when the span's own component is stronger than all of
        its children; None when no evidence shows at all (the slow-path rule applies)."""
        own = data.get("parent_flags", {}).get("here", 0.0)
        rows = [r for r in data["rows"] if max(r.get("here", 0.0), r.get("below", 0.0)) > 0]
        if not rows:
            return "here" if own > 0 else None
        failing = [r for r in rows if r["status"] == "error"]
        best = max(failing or rows, key=lambda r: max(r["here"], r["below"]))
        if own >= max(best["here"], best["below"]):
            return "here"
        return best, best["below"] > best["here"]

    def _candidates(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Failing children first; else children carrying most of the parent's excess latency.

        Excess = duration - normal duration of the same (service, operation); without a
        normal, the whole duration counts.
        """

        def excess(duration: float, normal: float | None) -> float:
            return duration - (normal or 0.0)

        rows = sorted(data["rows"], key=lambda r: -excess(r["duration_us"], r.get("normal_us")))
        failing = [r for r in rows if r["status"] == "error"]
        if failing:
            return failing
        parent_excess = excess(data["parent_duration_us"], data.get("parent_normal_us"))
        floor = self.settings.explain_share * max(parent_excess, 0.0)
        return [r for r in rows if excess(r["duration_us"], r.get("normal_us")) >= max(floor, 1.0)]

    def _next_span(self, entry: str, path: list[dict[str, Any]], steps: list[Step]) -> str | None:
        searched = {s.data.get("parent") for s in steps if s.tool == "search_traces"}
        if len(searched) >= self.settings.max_trace_calls:
            return None
        if entry not in searched:
            return entry
        if path and path[-1]["span_id"] not in searched:
            return str(path[-1]["span_id"])
        return None

    def _suspects(
        self, path: list[dict[str, Any]], steps: list[Step], entry_service: str
    ) -> list[str]:
        """Services with evidence, strongest first; then those on the descended path,
        deepest first; then the entry service and the callees of the entry, most slowed
        (ratio to normal) first, so that an entry whose excess no single call explains
        still yields suspects and never an empty answer."""
        seen = evidence_seen(steps)
        services: list[str] = []
        for _score, service in sorted(seen.values(), key=lambda v: -v[0]):
            if service and service not in services:
                services.append(service)
        for row in reversed(path):
            if row["service"] not in services:
                services.append(row["service"])
        if entry_service not in services:
            services.append(entry_service)
        first = next((s for s in steps if s.tool == "search_traces"), None)
        rows = first.data.get("rows", []) if first else []
        for row in sorted(
            rows, key=lambda r: -(r["duration_us"] / max(r.get("normal_us") or 1.0, 1.0))
        ):
            if row["service"] not in services:
                services.append(row["service"])
        return services

    def _next_check(
        self, path: list[dict[str, Any]], steps: list[Step], turn: Turn
    ) -> Reply | None:
        done = {(s.tool, s.arguments.get("service_name")) for s in steps}
        # a compact dialogue leaves the time out: the tools default to the failure time
        when = (
            {}
            if turn.dialogue == DialogueStyle.COMPACT
            else {"timestamp": turn.case.entry_start.isoformat()}
        )
        suspects = self._suspects(path, steps, turn.case.entry_service)
        for service in suspects[: self.settings.suspects_checked]:
            for tool in ("search_logs", "search_fluctuating_metrics"):
                if (tool, service) not in done:
                    return _call(tool, service_name=service, **when)
        return None

    # --- ranking -------------------------------------------------------------------------
    def _ranking(
        self, path: list[dict[str, Any]], steps: list[Step], entry_service: str
    ) -> list[dict[str, str]]:
        suspects = self._suspects(path, steps, entry_service)
        seen = evidence_seen(steps)
        if seen:
            return self._filled_from_path(ranked_by_evidence(seen, suspects), path)
        score = {
            service: 1.0 - index / (len(suspects) + 1) for index, service in enumerate(suspects)
        }
        extra: dict[str, list[dict[str, str]]] = {}
        single_pod_faults: dict[str, dict[str, str]] = {}
        for step in steps:
            service = step.arguments.get("service_name")
            if service not in score:
                continue
            if step.tool == "search_logs":
                # only patterns well above their usual rate count: background errors are noise
                unusual = {p[0] for p in step.data.get("patterns", []) if p[2] >= 3 * (p[3] + 1)}
                score[service] += 0.6 if unusual & {"error", "fatal"} else 0.2 if unusual else 0
            if step.tool == "search_fluctuating_metrics":
                fluctuating = step.data.get("fluctuating", [])
                if fluctuating:
                    score[service] += min(fluctuating[0][2] / 20.0, 0.5)
                extra[service] = self._components(fluctuating)
                lone = self._lone_pod(fluctuating, step.data.get("covered", []))
                if lone:
                    single_pod_faults[service] = lone
        ranked = sorted(score, key=lambda s: -score[s])
        if suspects and ranked[0] != suspects[0] and score[ranked[0]] < score[suspects[0]] + 0.5:
            ranked.remove(suspects[0])
            ranked.insert(0, suspects[0])  # depth is the strongest single clue
        result: list[dict[str, str]] = []
        for service in ranked:
            components = [c for c in extra.get(service, []) if c not in result]
            if service in single_pod_faults:
                result.append(single_pod_faults[service])
                components = [c for c in components if c != single_pod_faults[service]]
            result.append({"service": service})
            result.extend(components)
        return self._filled_from_path(result, path)

    def _filled_from_path(
        self, result: list[dict[str, str]], path: list[dict[str, Any]]
    ) -> list[dict[str, str]]:
        """Up to `min_candidates`: the pods and nodes of the descended path."""
        for row in path:
            for key in ("pod", "node"):
                if len(result) >= self.settings.min_candidates:
                    break
                if row.get(key) and {key: row[key]} not in result:
                    result.append({key: row[key]})
        return result

    def _lone_pod(self, fluctuating: list[Any], covered: list[Any]) -> dict[str, str] | None:
        """The one pod, among two or more of a service, whose metrics stand out (z >= 5)."""
        pods = [name for name, level in covered if level == "pod"]
        standing = {e for e, _m, z, level in fluctuating if level == "pod" and z >= 5}
        if len(pods) >= 2 and len(standing) == 1:
            return {"pod": standing.pop()}
        return None

    def _components(self, fluctuating: list[Any]) -> list[dict[str, str]]:
        """Pods or nodes (not the service itself) whose metrics stand out, strongest first."""
        found: list[dict[str, str]] = []
        for entity, _metric, z, level in fluctuating:
            if z < 5 or level not in ("pod", "node"):
                continue
            if {level: entity} not in found:
                found.append({level: entity})
        return found[:2]
