"""Each detector on hand-built telemetry with a known answer, and the fusion over them.

The system: web -> api (client span) -> db, one request every 2 s for 1,500 s; the fault
window is [1200 s, 1380 s]; the 20 minutes before it are the clean baseline.
"""

from __future__ import annotations

import pytest

from storekit import at, build_store, fault, span
from thinkfl.evidence import EvidenceKind, EvidenceSettings, evidence_for
from thinkfl.tools import Toolbox

FAULT_S, END_S = 1200, 1500


def in_window(t: float) -> bool:
    return FAULT_S <= t <= FAULT_S + 180


def request(i: int, t: float, gap_us: int, db_us: int, call_kind: str = "client") -> list[dict]:
    trace = f"r{i}"
    client_us = db_us + gap_us
    return [
        span(f"{trace}w", None, "web", t, client_us + 3_000, trace=trace, op="GET /"),
        span(
            f"{trace}a", f"{trace}w", "api", t + 0.001, client_us + 1_000, trace=trace, op="GET /x"
        ),
        span(
            f"{trace}c",
            f"{trace}a",
            "api",
            t + 0.002,
            client_us,
            trace=trace,
            op="call db",
            kind=call_kind,
        ),
        span(f"{trace}d", f"{trace}c", "db", t + 0.0025, db_us, trace=trace, op="query"),
    ]


def log(t: float, service: str, message: str, severity: str = "info", span_id=None) -> dict:
    return {
        "time": at(t),
        "service": service,
        "pod": None,
        "node": None,
        "severity": severity,
        "message": message,
        "trace_id": None,
        "span_id": span_id,
    }


def metric(t: float, entity: str, name: str, value: float, level: str = "service") -> dict:
    return {"level": level, "entity": entity, "metric": name, "time": at(t), "value": value}


def scenario(
    gap_in_window: bool = False,
    saturate: bool = False,
    vanish: bool = False,
    errors: bool = False,
    intermittent: bool = False,
    stop_calls: bool = False,
    call_kind: str = "client",
) -> tuple[list, list, list]:
    spans, logs, metrics = [], [], []
    for i, t in enumerate(range(0, END_S, 2)):
        slowed = gap_in_window or (intermittent and i % 4 == 0)  # every call, or one in four
        gap = 100_000 if slowed and in_window(t) else 1_000 + (i % 3) * 100
        db = 20_000 + (i % 5) * 500
        trace = request(i, t, gap, db, call_kind)
        spans += trace[:2] if stop_calls and in_window(t) else trace  # api no longer calls db
        logs.append(log(t, "api", f"Handler#10 served request {i}", span_id=f"r{i}a"))
        if not (vanish and in_window(t)):
            logs.append(log(t, "api", f"Repo#20 loaded row {i} in 3 ms", span_id=f"r{i}a"))
        logs.append(log(t, "web", f"GET / 200 {i}"))
        logs.append(log(t, "db", f"query ok rows={i % 7}"))
    logs.append(log(300, "db", "connection reset by peer id=17", "error"))
    if errors:
        logs += [
            log(FAULT_S + 5 * k, "db", f"connection reset by peer id={k}", "error")
            for k in range(10)
        ]
    for minute in range(END_S // 60):
        t = minute * 60
        busy = saturate and in_window(t)
        metrics.append(
            metric(t, "db", "cpu_utilization_percent", 99.0 if busy else 3.0 + minute % 3)
        )
        metrics.append(metric(t, "db", "latency_p99_s", 0.005 + (1e-7 if in_window(t) else 0.0)))
        metrics.append(metric(t, "db", "success_rate", 0.0))
        metrics.append(metric(t, "api", "memory_mb", 512.0 + (0.5 if in_window(t) else 0.0)))
    return spans, logs, metrics


def evidence_of(tmp_path, **kinds):
    spans, logs, metrics = scenario(**kinds)
    store = build_store(tmp_path / "s", spans, metrics, logs, faults=[fault("f", FAULT_S, "db")])
    (case,) = store.cases()
    return store, case, evidence_for(store, case)


def items(evidence, kind):
    return [(i.entity, i.kind) for s in evidence.rank() for i in s.items if i.kind == kind]


def test_a_quiet_system_shows_no_evidence(tmp_path):
    # flat and constant series (a p99 moving by 1e-7, a success rate always 0, memory +0.5 MB
    # of 512) and unchanged logs and spans: nothing fires
    _store, _case, evidence = evidence_of(tmp_path)
    assert evidence.rank() == []
    assert evidence.baseline_note == "clean telemetry before the window"


def test_a_vanished_frequent_info_line_is_a_drop_of_its_code_location(tmp_path):
    _store, _case, evidence = evidence_of(tmp_path, vanish=True)
    (top,) = evidence.rank()
    (item,) = top.items
    # 600 baseline lines of each api location (half the mix); 91 requests in the window:
    # expected 45.5 of Repo#20, seen 0 -> z = 45.5 / sqrt(46.5) = 6.67, strength 6.67 / 2.5
    assert (top.entity, item.kind, item.subject) == ("api", EvidenceKind.LOG_DROP, "INFO Repo#20")
    assert item.observed == 0 and item.normal == pytest.approx(45.5, abs=0.01)
    assert item.strength == pytest.approx(2.669, abs=0.001)
    assert item.pointers[0].startswith("log:") and item.pointers[1].endswith("a")  # a span id


def test_a_rare_error_burst_is_a_rise_with_ids_masked(tmp_path):
    _store, _case, evidence = evidence_of(tmp_path, errors=True)
    (top,) = evidence.rank()
    assert top.entity == "db"
    (item,) = top.items
    assert item.kind == EvidenceKind.LOG_RISE and item.observed == 10
    assert item.subject == "ERROR connection reset by peer id=<*>"


@pytest.mark.parametrize("call_kind", ["client", "internal", "unspecified"])
def test_a_gap_between_client_and_server_span_blames_the_callee_not_the_caller(tmp_path, call_kind):
    # the wrapper is found by its shape (one child, in another service, under a span of its
    # own service), whatever kind the stack wrote for it
    _store, _case, evidence = evidence_of(tmp_path, gap_in_window=True, call_kind=call_kind)
    (top,) = evidence.rank()
    (item,) = top.items
    assert (top.entity, item.kind) == ("db", EvidenceKind.INCOMING_GAP)
    assert item.subject == "api -> query" and item.observed == 100.0  # ms, against p95 1.2 ms
    assert items(evidence, EvidenceKind.SELF_TIME) == []  # the caller's client span has none


def direct_calls(delayed_callers: set[str]) -> list[dict]:
    """web and mobile serve requests by calling db straight from their server span (no client
    span); in the window the time before db's span starts grows by 100 ms for the callers
    named."""
    spans = []
    for i, t in enumerate(range(0, END_S, 2)):
        for caller in ("web", "mobile"):
            trace = f"{caller}{i}"
            wait_us = 1_000 + (i % 3) * 100
            if caller in delayed_callers and in_window(t):
                wait_us += 100_000
            db_us = 20_000 + (i % 5) * 500
            spans += [
                span(f"{trace}s", None, caller, t, wait_us + db_us + 1_000, trace=trace),
                span(f"{trace}d", f"{trace}s", "db", t + wait_us / 1e6, db_us, trace=trace),
            ]
    return spans


def test_a_delay_two_callers_see_into_a_callee_without_client_spans_is_the_callees(tmp_path):
    store = build_store(
        tmp_path / "s", direct_calls({"web", "mobile"}), faults=[fault("f", FAULT_S)]
    )
    (case,) = store.cases()
    evidence = evidence_for(store, case)
    top = evidence.rank()[0]
    assert (top.entity, top.items[0].kind) == ("db", EvidenceKind.INCOMING_GAP)
    # median idle next to the call: 1.1 ms + 100 ms before it, 1 ms after it
    assert top.items[0].subject == "mobile, web -> db" and top.items[0].observed == 102.1
    # the callers' idle time is explained by the link: no self-time of theirs fires
    assert items(evidence, EvidenceKind.SELF_TIME) == []


def test_the_same_idle_time_seen_by_one_caller_stays_the_callers_own(tmp_path):
    store = build_store(tmp_path / "s", direct_calls({"web"}), faults=[fault("f", FAULT_S)])
    (case,) = store.cases()
    evidence = evidence_for(store, case)
    assert items(evidence, EvidenceKind.INCOMING_GAP) == []
    assert (evidence.rank()[0].entity, evidence.rank()[0].items[0].kind) == (
        "web",
        EvidenceKind.SELF_TIME,
    )


def one_caller_two_pods(delayed: str) -> list[dict]:
    """web calls db straight from its server span, each request to db-0 or db-1 in turn; in
    the window 100 ms pass before the call starts: on calls into db-0 (`delayed="db-0"`),
    or on every call (`delayed="web"`: web's own work)."""
    spans = []
    for i, t in enumerate(range(0, END_S, 2)):
        trace, pod = f"r{i}", f"db-{i % 2}"
        wait_us = 1_000 + (i % 3) * 100
        if in_window(t) and delayed in (pod, "web"):
            wait_us += 100_000
        spans += [
            span(f"{trace}s", None, "web", t, wait_us + 21_000, trace=trace, pod="web-0"),
            span(f"{trace}d", f"{trace}s", "db", t + wait_us / 1e6, 20_000, trace=trace, pod=pod),
        ]
    return spans


@pytest.mark.parametrize(
    ("delayed", "culprit", "kind"),
    [
        ("db-0", "db-0", EvidenceKind.INCOMING_GAP),
        ("web", "web", EvidenceKind.SELF_TIME),  # a single pod is placed as its service
    ],
)
def test_one_callers_delay_into_one_pod_of_a_service_is_that_pods(tmp_path, delayed, culprit, kind):
    # the caller's work before a call does not depend on which pod takes it: a gap into one
    # pod only, while the caller's calls into the other pod stay normal, is that pod's
    store = build_store(tmp_path / "s", one_caller_two_pods(delayed), faults=[fault("f", FAULT_S)])
    (case,) = store.cases()
    top = evidence_for(store, case).rank()[0]
    assert (top.entity, top.items[0].kind) == (culprit, kind)


def test_a_gap_on_one_call_in_four_fires_by_its_share_of_slow_calls(tmp_path):
    _store, _case, evidence = evidence_of(tmp_path, intermittent=True)
    (top,) = evidence.rank()
    (item,) = top.items
    # the median gap stays normal; a quarter of the window's calls are beyond 2 x p95
    assert (top.entity, item.kind, item.unit) == (
        "db",
        EvidenceKind.INCOMING_GAP,
        "% of calls slow",
    )
    assert 20 <= item.observed <= 30 and item.strength == round(item.observed / 10, 3)


def test_a_caller_that_stops_calling_its_callee_is_a_call_shift_of_the_caller(tmp_path):
    _store, _case, evidence = evidence_of(tmp_path, stop_calls=True)
    shifts = [i for s in evidence.rank() for i in s.items if i.kind == EvidenceKind.CALL_SHIFT]
    assert [(i.entity, i.subject, i.observed) for i in shifts] == [("api", "calls to db", 0)]
    # about 90 calls expected in the window (one per api span, as normal): z = 90 / sqrt(91)
    assert shifts[0].normal > 80 and shifts[0].strength > 3


def test_a_pod_at_its_cpu_limit_is_saturation_first(tmp_path):
    _store, _case, evidence = evidence_of(tmp_path, saturate=True, vanish=True)
    ranking = [(s.entity, s.items[0].kind) for s in evidence.rank()]
    assert ranking == [("db", EvidenceKind.SATURATION), ("api", EvidenceKind.LOG_DROP)]
    saturated = evidence.rank()[0].items[0]
    assert saturated.observed == 99.0 and saturated.normal == 4.0


def test_evidence_is_cached_and_shown_by_the_tools(tmp_path):
    store, case, evidence = evidence_of(tmp_path, gap_in_window=True, vanish=True)
    assert evidence_for(store, case) == evidence  # read back from the cache
    cached = list((store.path / "evidence").rglob("cases/*.json"))
    assert len(cached) == 1
    box = Toolbox(store, case)
    traces = box.call("search_traces", {"parent_span_id": case.entry_span_id})
    (row,) = traces.data["rows"]
    assert row["service"] == "api" and row["here"] > 0 and row["below_at"] == "db"
    assert "deeper: db" in traces.text and "log_drop" in traces.text
    logs = box.call(
        "search_logs", {"service_name": "api", "timestamp": case.entry_start.isoformat()}
    )
    assert "DROP api INFO Repo#20: 0 lines vs 45.5 lines (strength 2.7)" in logs.text


def test_settings_are_named_and_change_the_outcome(tmp_path):
    spans, logs, metrics = scenario(vanish=True)
    store = build_store(tmp_path / "s", spans, metrics, logs, faults=[fault("f", FAULT_S, "db")])
    (case,) = store.cases()
    strict = EvidenceSettings()
    strict.logs.z_threshold = 10.0  # z 6.67 no longer reaches strength 1
    assert evidence_for(store, case, strict).rank() == []


# --- fusion rules on hand-made items (weights: log shifts 1, saturation 3; support 0.25) ---
def item(
    level: str,
    entity: str,
    kind: EvidenceKind,
    strength: float,
    subject: str = "x",
    example: str = "",
):
    from thinkfl.evidence import EvidenceItem

    return EvidenceItem(
        level=level,
        entity=entity,
        kind=kind,
        subject=subject,
        example=example,
        observed=1.0,
        normal=0.0,
        strength=strength,
    )


def entities_of(*rows: tuple[str, str, str | None, str | None]) -> dict:
    from thinkfl.telemetry import Entity, Level

    return {
        name: Entity(level=Level(level), name=name, service=svc, node=node)
        for level, name, svc, node in rows
    }


def test_a_callers_rising_line_that_names_its_callee_counts_for_the_callee():
    from thinkfl.evidence.fusion import fuse

    rise = EvidenceKind.LOG_RISE
    items = [
        item(
            "service",
            "api",
            rise,
            3.0,
            "ERROR unexpected response from <*>",
            "unexpected response from db: bad",
        ),
        item("service", "api", rise, 1.0, "ERROR retry to web", "retry to web"),  # web is no callee
        item("service", "db", rise, 1.0, "ERROR validation failed"),
    ]
    edges = {(("service", "api"), ("service", "db"))}
    known = entities_of(("service", "api", None, None), ("service", "db", None, None))
    scores = {s.entity: s for s in fuse(items, EvidenceSettings().fusion, edges, known)}
    # db: its own rise log2(1 + 1) = 1.0 and the moved one log2(1 + 3) = 2.0 (same kind: the max)
    assert scores["db"].score == 2.0
    assert scores["db"].items[0].subject == "api says: ERROR unexpected response from <*>"
    # api keeps only the line that names no callee: log2(1 + 1) = 1.0, below db (not discounted:
    # 2.0 >= 0.9 x 1.0 explains it, so x 0.5)
    assert scores["api"].score == 0.5


def test_metric_evidence_nothing_else_confirms_counts_half():
    from thinkfl.evidence.fusion import fuse

    items = [
        item("pod", "p1", EvidenceKind.SATURATION, 1.0),
        item("pod", "p2", EvidenceKind.SATURATION, 1.0),
        item("pod", "p2", EvidenceKind.LOG_RISE, 1.0),
    ]
    known = entities_of(("pod", "p1", "s1", "n1"), ("pod", "p2", "s2", "n2"))
    ranked = [(s.entity, s.score) for s in fuse(items, EvidenceSettings().fusion, None, known)]
    # p2: 3 x log2(2) = 3.0 plus 0.25 x 1.0 of its log rise; p1 alone: 3.0 x 0.5
    assert ranked == [("p2", 3.25), ("p1", 1.5)]


def test_a_lifted_service_with_evidence_of_its_own_is_listed_once():
    from thinkfl.evidence.fusion import fuse

    items = [
        item("service", "s", EvidenceKind.LOG_DROP, 1.0),
        item("pod", "s-0", EvidenceKind.LOG_RISE, 3.0),
        item("pod", "s-1", EvidenceKind.LOG_RISE, 1.0),
    ]
    known = entities_of(("pod", "s-0", "s", "n1"), ("pod", "s-1", "s", "n2"))
    scores = fuse(items, EvidenceSettings().fusion, None, known)
    services = [x for x in scores if x.key == ("service", "s")]
    # lifted: the best pod 2.0 x 1.1; its own drop (1.0) is kept among the items
    assert len(services) == 1 and services[0].score == 2.2
    assert {i.kind for i in services[0].items} == {EvidenceKind.LOG_DROP, EvidenceKind.LOG_RISE}
