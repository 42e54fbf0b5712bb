"""Trace evidence: self-time, caller->callee gaps and own errors against a clean baseline.

Per span (computed once per store, `span_facts.parquet` in the evidence cache):
- self-time = duration minus the summed durations of its children (at least 0): where a
  component spends time itself, so a slow callee does not make its callers look slow. A
  *call wrapper* has none: a span whose only child is in another service and that is a
  client span, or, whatever kind the stack wrote (none, INTERNAL), not a server or
  consumer span and not the entry of its service (its parent is in the same service; an
  entry is the handler of a request, whose own work this is): its extra time is the gap;
- gap = the parent's idle time next to a span in another service than its parent: from the
  parent's start or the end of the sibling before it to its start, plus from its end to
  the next sibling's start or the parent's end. Under a call wrapper that is the wrapper's
  duration minus the callee's: time on the wire, in a sidecar, in the callee's queue, which
  network faults inflate while the callee's own spans stay normal;
- own error = an error span none of whose children failed: the error starts here.

A gap under a wrapper is evidence about the callee. A gap under a server span that calls
other services directly (a stack without client spans) is also the caller's own time, so
it counts for the callee only when `link_min_callers` callers see it on their links into
that callee; their self-time then leaves it out. No channel needs span kinds to fire: a
server kind only keeps a span from being read as a wrapper.

Per caller->callee service edge: calls per request the caller served, now against normal. A caller
that stops calling a callee (it fails or returns before the call) or starts calling one it
never called is itself behaving differently: the item is the caller's.

Per component and operation, the window's median is compared with the baseline's p95
(floored); per component, the own-error rate with its normal rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scipy.stats import binom

from thinkfl.evidence.cache import write_atomic
from thinkfl.evidence.model import EvidenceItem, EvidenceKind
from thinkfl.evidence.periods import Periods
from thinkfl.evidence.settings import TraceSettings
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.store import sql_literal

FACTS = "span_facts.parquet"


def span_facts(store: TelemetryStore, folder: Path) -> Path:
    """Self-time, incoming gap and own-error flag of every span (built once per store)."""
    path = folder / FACTS
    if path.is_file():
        return path
    table = store.query(
        """WITH kids AS (
               SELECT parent_id, sum(duration_us) AS child_us, count(*) AS n,
                      any_value(service) AS child_service,
                      bool_or(status = 'error') AS child_error
               FROM spans WHERE parent_id IS NOT NULL GROUP BY parent_id),
           siblings AS (  -- where the parent was busy with other children around each span
               SELECT span_id,
                      max(epoch_us(start) + duration_us) OVER (
                          PARTITION BY parent_id ORDER BY start, span_id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_end,
                      min(epoch_us(start)) OVER (
                          PARTITION BY parent_id ORDER BY start, span_id
                          ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS after_start
               FROM spans WHERE parent_id IS NOT NULL),
           shaped AS (
               SELECT s.*, p.service AS caller, p.pod AS caller_pod,
                      k.child_us, k.child_error,
                      coalesce(k.n = 1 AND k.child_service <> s.service
                               AND (s.kind = 'client'
                                    OR (s.kind NOT IN ('server', 'consumer')
                                        AND p.service = s.service)), false) AS is_wrapper
               FROM spans s
               LEFT JOIN kids k ON k.parent_id = s.span_id
               LEFT JOIN spans p ON p.span_id = s.parent_id)
           SELECT s.span_id, s.parent_id, s.trace_id, s.service, s.pod, s.node, s.operation,
                  s.start, s.duration_us, s.status,
                  CASE WHEN s.is_wrapper THEN NULL
                       ELSE greatest(s.duration_us - coalesce(s.child_us, 0), 0)::DOUBLE
                  END AS self_us,
                  CASE WHEN s.caller IS NOT NULL AND s.caller <> s.service
                       THEN (greatest(epoch_us(s.start) - greatest(epoch_us(p.start),
                                      coalesce(sb.before_end, epoch_us(p.start))), 0)
                             + greatest(least(epoch_us(p.start) + p.duration_us,
                                              coalesce(sb.after_start,
                                                       epoch_us(p.start) + p.duration_us))
                                        - (epoch_us(s.start) + s.duration_us), 0)
                            )::DOUBLE END AS gap_us,
                  coalesce(p.is_wrapper, false) AS wrapped,
                  s.caller, s.caller_pod,
                  s.status = 'error' AND NOT coalesce(s.child_error, false) AS own_error
           FROM shaped s
           LEFT JOIN shaped p ON p.span_id = s.parent_id
           LEFT JOIN siblings sb ON sb.span_id = s.span_id
           ORDER BY s.start"""
    )
    write_atomic(path, table)
    return path


def trace_evidence(
    store: TelemetryStore, periods: Periods, facts: Path, settings: TraceSettings
) -> list[EvidenceItem]:
    source = f"read_parquet({sql_literal(facts.as_posix())})"
    links, explained = _direct_link_items(store, periods, source, settings)
    normal = periods.is_baseline("start")
    tail = settings
    # the window's self-time leaves out the idle time a corroborated link explains
    own = "greatest(f.self_us - coalesce(x.explained_us, 0), 0)"
    rows = store.query(
        f"""WITH normal AS (
                SELECT service, pod, operation,
                       greatest(coalesce(quantile_cont(self_us, 0.95), 0), {tail.min_self_time_us})
                           AS self_p95,
                       greatest(coalesce(quantile_cont(gap_us, 0.95) FILTER (WHERE wrapped), 0),
                                {tail.min_gap_us}) AS gap_p95,
                       count(self_us) AS s_normal, count(gap_us) FILTER (WHERE wrapped) AS g_normal,
                       count(*) AS n_normal, count(*) FILTER (WHERE own_error) AS err_normal
                FROM {source} WHERE {normal} GROUP BY ALL),
            explained AS ({explained}),
            f AS (
                SELECT f.* EXCLUDE (self_us, gap_us),
                       CASE WHEN f.self_us IS NOT NULL THEN {own} END AS self_us,
                       CASE WHEN f.wrapped THEN f.gap_us END AS gap_us
                FROM {source} f LEFT JOIN explained x ON x.parent_id = f.span_id
                WHERE {periods.is_window("f.start")})
            SELECT f.service, f.pod, f.operation,
                   count(*) AS n_now, coalesce(any_value(b.n_normal), 0) AS n_normal,
                   count(self_us) AS s_now, coalesce(any_value(b.s_normal), 0) AS s_normal,
                   median(self_us) AS self_now, any_value(b.self_p95) AS self_p95,
                   avg((self_us > {tail.self_time_factor} * b.self_p95)::INT) AS self_tail,
                   count(*) FILTER (WHERE self_us > {tail.self_time_factor} * b.self_p95) AS self_slow,
                   count(gap_us) AS g_now, coalesce(any_value(b.g_normal), 0) AS g_normal,
                   median(gap_us) AS gap_now, any_value(b.gap_p95) AS gap_p95,
                   avg((gap_us > {tail.gap_factor} * b.gap_p95)::INT) AS gap_tail,
                   count(*) FILTER (WHERE gap_us > {tail.gap_factor} * b.gap_p95) AS gap_slow,
                   any_value(caller) FILTER (WHERE gap_us IS NOT NULL) AS caller,
                   count(*) FILTER (WHERE own_error) AS err_now,
                   coalesce(any_value(b.err_normal), 0) AS err_normal,
                   arg_max(span_id, self_us) AS slowest_self,
                   arg_max(span_id, gap_us) AS widest_gap,
                   (list(span_id) FILTER (WHERE own_error))[1:3] AS error_spans
            FROM f LEFT JOIN normal b
                ON f.service = b.service AND f.pod IS NOT DISTINCT FROM b.pod
                AND f.operation = b.operation
            GROUP BY f.service, f.pod, f.operation"""
    ).to_pylist()
    items: list[EvidenceItem] = list(links)
    errors: dict[tuple[str, str], list[Any]] = {}  # err/n now, err/n normal, example spans
    for row in rows:
        level, name = store.place(row["service"], row["pod"])
        items.extend(_latency_items(level, name, row, settings))
        totals = errors.setdefault((level, name), [0, 0, 0, 0, []])
        totals[0] += row["err_now"]
        totals[1] += row["n_now"]
        totals[2] += row["err_normal"]
        totals[3] += row["n_normal"]
        totals[4] = (totals[4] + (row["error_spans"] or []))[:3]
    for (level, name), (err_now, n_now, err_normal, n_normal, spans) in errors.items():
        item = _error_item(level, name, err_now, n_now, err_normal, n_normal, spans, settings)
        if item is not None:
            items.append(item)
    return items


def _direct_link_items(
    store: TelemetryStore, periods: Periods, source: str, s: TraceSettings
) -> tuple[list[EvidenceItem], str]:
    """Gaps on links without a wrapper (a server span calling another service directly):
    per (caller service, callee component), the window against the baseline. A callee whose
    links from `link_min_callers` callers fire gets one item, and so does a pod whose callers
    call the other pods of its service normally; the SQL returned lists the parent spans
    whose idle time those links explain (parent_id, explained_us)."""
    now, normal = periods.is_window("start"), periods.is_baseline("start")
    direct = "gap_us IS NOT NULL AND NOT wrapped"
    rows = store.query(
        f"""WITH normal AS (
                SELECT caller, service, pod, count(*) AS g_normal,
                       greatest(quantile_cont(gap_us, 0.95), {s.min_gap_us}) AS gap_p95
                FROM {source} WHERE {normal} AND {direct} GROUP BY ALL)
            SELECT f.caller, f.service, f.pod, count(*) AS g_now,
                   any_value(b.g_normal) AS g_normal, median(gap_us) AS gap_now,
                   any_value(b.gap_p95) AS gap_p95,
                   avg((gap_us > {s.gap_factor} * b.gap_p95)::INT) AS gap_tail,
                   count(*) FILTER (WHERE gap_us > {s.gap_factor} * b.gap_p95) AS gap_slow,
                   arg_max(span_id, gap_us) AS widest_gap
            FROM {source} f JOIN normal b
                ON f.caller = b.caller AND f.service = b.service
                AND f.pod IS NOT DISTINCT FROM b.pod
            WHERE {periods.is_window("f.start")} AND {direct}
            GROUP BY f.caller, f.service, f.pod"""
    ).to_pylist()
    fired: dict[tuple[str, str], list[tuple[str, dict[str, Any], EvidenceItem]]] = {}
    quiet: set[tuple[str, str, str | None]] = set()  # (caller, callee, pod): enough calls, normal
    for row in rows:
        if row["caller"] == row["service"]:
            continue
        level, name = store.place(row["service"], row["pod"])
        row["operation"] = row["service"]
        found = _latency_items(level, name, row, s, kinds=(EvidenceKind.INCOMING_GAP,))
        if found:
            fired.setdefault((level, name), []).append((row["caller"], row, found[0]))
        elif row["g_now"] >= s.min_window_spans and row["g_normal"] >= s.min_baseline_spans:
            quiet.add((row["caller"], row["service"], row["pod"]))
    items: list[EvidenceItem] = []
    callees: list[tuple[str, str | None]] = []
    for (_level, name), links in fired.items():
        callers = sorted({caller for caller, _, _ in links})
        if len(callers) < s.link_min_callers and not _one_pod_of_its_service(links, quiet):
            continue  # one caller's idle time may be its own: it stays its self-time
        best = max((item for _, _, item in links), key=lambda i: i.strength)
        subject = f"{', '.join(callers)} -> {name}"
        items.append(best.model_copy(update={"subject": subject}))
        callees.extend((row["service"], row["pod"]) for _, row, _ in links)
    if not callees:
        return items, "SELECT NULL AS parent_id, 0.0 AS explained_us WHERE false"
    values = ", ".join(
        f"({sql_literal(service)}, {sql_literal(pod) if pod is not None else 'NULL'})"
        for service, pod in callees
    )
    explained = f"""SELECT parent_id, sum(gap_us) AS explained_us
        FROM {source} JOIN (VALUES {values}) AS c(callee, callee_pod)
            ON service = callee AND pod IS NOT DISTINCT FROM callee_pod
        WHERE {now} AND {direct} GROUP BY parent_id"""
    return items, explained


def _one_pod_of_its_service(
    links: list[tuple[str, dict[str, Any], EvidenceItem]], quiet: set[tuple[str, str, str | None]]
) -> bool:
    """The callers that see the gap into this pod call other pods of its service normally:
    their own work before a call does not depend on the pod that takes it, so the gap is
    the pod's (its network, its queue)."""
    return any(
        quiet_caller == caller and service == row["service"] and pod != row["pod"]
        for caller, row, _ in links
        if row["pod"] is not None
        for quiet_caller, service, pod in quiet
    )


def _latency_items(
    level: str,
    name: str,
    row: dict[str, Any],
    s: TraceSettings,
    kinds: tuple[EvidenceKind, ...] = (EvidenceKind.SELF_TIME, EvidenceKind.INCOMING_GAP),
) -> list[EvidenceItem]:
    """Self-time and incoming gap: the window median against `factor` x the normal p95, or,
    for a fault that hits only some calls (retries after packet loss, a slow disk now and
    then), the share of calls beyond that bound against `tail_min_share`."""
    found = []
    channels = (
        (EvidenceKind.SELF_TIME, "s", "self", s.self_time_factor, row["operation"], "slowest_self"),
        (
            EvidenceKind.INCOMING_GAP,
            "g",
            "gap",
            s.gap_factor,
            f"{row['caller']} -> {row['operation']}",
            "widest_gap",
        ),
    )
    for kind, count, stat, factor, subject, pointer in channels:
        if kind not in kinds:
            continue
        if row[f"{count}_now"] < s.min_window_spans or (row[f"{count}_normal"] or 0) < (
            s.min_baseline_spans
        ):
            continue
        normal = row[f"{stat}_p95"]
        strength = (row[f"{stat}_now"] / normal) / factor
        observed, shown_normal, unit = row[f"{stat}_now"] / 1000, normal / 1000, " ms"
        share = row[f"{stat}_tail"] or 0.0
        slow_calls = row[f"{stat}_slow"] or 0
        calls = row[f"{count}_now"]
        if strength < 1.0 and share >= s.tail_min_share and _unlikely(slow_calls, calls, s):
            strength = share / s.tail_min_share
            observed, shown_normal, unit = 100 * share, 5.0, "% of calls slow"
        if strength < 1.0:
            continue
        found.append(
            EvidenceItem(
                level=level,
                entity=name,
                kind=kind,
                subject=subject,
                observed=round(observed, 2),
                normal=round(shown_normal, 2),
                unit=unit,
                strength=round(strength, 3),
                pointers=[row[pointer]],
            )
        )
    return found


def _unlikely(slow: int, calls: int, s: TraceSettings) -> bool:
    """So many calls beyond the bound are unlikely by chance: a binomial tail below
    `tail_alpha` when a normal call is beyond it with probability `tail_normal_share`."""
    return bool(binom.sf(slow - 1, calls, s.tail_normal_share) < s.tail_alpha)


def _error_item(
    level: str,
    name: str,
    err_now: int,
    n_now: int,
    err_normal: int,
    n_normal: int,
    spans: list[Any],
    s: TraceSettings,
) -> EvidenceItem | None:
    if err_now < s.error_min_count or n_now == 0:
        return None
    rate_now = err_now / n_now
    rate_normal = max(err_normal / n_normal if n_normal else 0.0, s.error_rate_floor)
    ratio = rate_now / rate_normal
    if ratio < s.error_factor:
        return None
    return EvidenceItem(
        level=level,
        entity=name,
        kind=EvidenceKind.OWN_ERRORS,
        subject="spans failing here first",
        observed=round(100 * rate_now, 1),
        normal=round(100 * (err_normal / n_normal if n_normal else 0.0), 1),
        unit="%",
        strength=round(ratio / s.error_factor, 3),
        pointers=list(spans),
    )


def call_edges(
    store: TelemetryStore, periods: Periods, facts: Path
) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """(caller, callee) component pairs seen calling each other in the window."""
    source = f"read_parquet({sql_literal(facts.as_posix())})"
    rows = store.query(
        f"""SELECT DISTINCT caller, caller_pod, service, pod FROM {source}
            WHERE {periods.is_window("start")} AND caller IS NOT NULL AND caller <> service"""
    ).to_pylist()
    return {
        (store.place(r["caller"], r["caller_pod"]), store.place(r["service"], r["pod"]))
        for r in rows
    }


def call_evidence(
    store: TelemetryStore, periods: Periods, facts: Path, settings: TraceSettings
) -> list[EvidenceItem]:
    """Call-edge changes: per (caller, callee) service pair, calls per request the caller
    served (its spans entered from elsewhere) in the window against the baseline's rate
    (Poisson z), both ways (a vanished or a new edge)."""
    source = f"read_parquet({sql_literal(facts.as_posix())})"
    now, normal = periods.is_window("start"), periods.is_baseline("start")
    rows = store.query(
        f"""WITH spans_of AS (
                SELECT service, count(*) FILTER (WHERE {now}) AS own_now,
                       count(*) FILTER (WHERE {normal}) AS own_normal
                FROM {source}
                WHERE ({now} OR {normal}) AND caller IS DISTINCT FROM service  -- requests served
                GROUP BY service),
            calls AS (
                SELECT caller, service AS callee,
                       count(*) FILTER (WHERE {now}) AS calls_now,
                       count(*) FILTER (WHERE {normal}) AS calls_normal,
                       any_value(span_id) FILTER (WHERE {now}) AS example
                FROM {source}
                WHERE caller IS NOT NULL AND caller <> service AND ({now} OR {normal})
                GROUP BY caller, service)
            SELECT c.*, o.own_now, o.own_normal
            FROM calls c JOIN spans_of o ON o.service = c.caller
            WHERE o.own_now > 0 AND o.own_normal > 0"""
    ).to_pylist()
    items = []
    for row in rows:
        expected = row["calls_normal"] / row["own_normal"] * row["own_now"]
        seen = row["calls_now"]
        z = (seen - expected) / math.sqrt(expected + 1)
        dropped = (
            expected >= settings.call_min_expected
            and seen <= settings.call_drop_max_ratio * expected
        )
        rose = seen >= settings.call_min_expected and seen >= settings.call_rise_ratio * (
            expected + 1
        )
        strength = abs(z) / settings.call_z_threshold
        if not (dropped or rose) or strength < 1.0:
            continue
        items.append(
            EvidenceItem(
                level="service",
                entity=row["caller"],
                kind=EvidenceKind.CALL_SHIFT,
                subject=f"calls to {row['callee']}",
                observed=seen,
                normal=round(expected, 2),
                unit=" calls",
                strength=round(strength, 3),
                pointers=[row["example"]] if row["example"] else [],
            )
        )
    return items
