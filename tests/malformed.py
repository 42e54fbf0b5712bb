"""The malformed-input corpus: each entry builds one bad input (or a bad argument) in a fresh
folder and says exactly what `thinkfl` must answer: the exit code and the one line on stderr.

`python tests/malformed.py OUT` writes every input under OUT (one folder per entry, with the
command in `command.txt`) for a person to try by hand; tests/test_malformed.py runs them.
In the expected lines `{d}` stands for the entry's folder.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

T0 = 1674981780  # 2023-01-29 08:43:00 UTC
POD = "ts-alpha-service-5dc8d4f9fd-46997"


def ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- Nezha ---------------------------------------------------------------------------------
NEZHA_TRACE = f"""
    TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration
    t1,s1,root,{POD},/run,{ns(T0 + 10)},{ns(T0 + 10.5)},500000
    """
NEZHA_LOG = f"""
    Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log
    x,{ns(T0 + 10.2)},10.0.0.2,{POD},server,t1,s1,16:43:10.200 INFO  a.B#1 ok
    """
NEZHA_METRIC = f"""
    Time,TimeStamp,PodName,CpuUsageRate(%)
    2023-01-29 08:43:00 +0000 UTC m=+0.9,{T0},{POD},12.5
    """
NEZHA_FAULTS = {
    "08": [{"inject_time": "2023-01-29 08:43:04", "inject_pod": POD, "inject_type": "cpu"}]
}


def nezha(d: Path, replace: dict[str, str | bytes | dict | list] | None = None) -> list[str]:
    """A one-span Nezha day under d/src, with the named files replaced."""
    day = d / "src" / "rca_data" / "2023-01-29"
    files: dict[str, str | bytes | dict | list] = {
        "trace/08_43_trace.csv": NEZHA_TRACE,
        "log/08_43_log.csv": NEZHA_LOG,
        f"metric/{POD}_metric.csv": NEZHA_METRIC,
        "2023-01-29-fault_list.json": NEZHA_FAULTS,
    }
    for name, content in {**files, **(replace or {})}.items():
        text = json.dumps(content) if isinstance(content, dict | list) else content
        _write(day / name, text)
    return ["ingest", "nezha", str(d / "src"), "--out", str(d / "store")]


def faults(items: object) -> dict[str, object]:
    return {"2023-01-29-fault_list.json": items}


# --- AIOps 2022 ----------------------------------------------------------------------------
AIOPS_TRACE = """
    timestamp,cmdb_id,span_id,trace_id,duration,type,status_code,operation_name,parent_span
    1647770000000,frontend-0,a1,t1,1000,rpc,0,hipstershop.Frontend/Home,
    """


def aiops(d: Path, truth: str | None = None, trace: str = AIOPS_TRACE) -> list[str]:
    _write(d / "src" / "trace" / "all" / "trace.csv", trace)
    if truth is not None:
        _write(d / "src" / "groundtruth.csv", truth)
    return ["ingest", "aiops2022", str(d / "src"), "--out", str(d / "store")]


# --- OTLP/JSON -----------------------------------------------------------------------------
def span(**override: object) -> dict[str, object]:
    body: dict[str, object] = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "GET /",
        "startTimeUnixNano": str(ns(T0)),
        "endTimeUnixNano": str(ns(T0 + 0.1)),
    }
    body.update(override)
    return body


def spans_request(*spans: dict, resource: object = None, scope: object = None) -> dict:
    if resource is None:
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]}
    return {
        "resourceSpans": [
            {
                "resource": resource,
                "scopeSpans": scope if scope is not None else [{"spans": list(spans)}],
            }
        ]
    }


def otlp(d: Path, content: str | bytes | dict | list) -> list[str]:
    text = json.dumps(content) if isinstance(content, dict | list) else content
    _write(d / "src" / "export.json", text)
    return ["ingest", "otlp", str(d / "src"), "--out", str(d / "store")]


# --- models ----------------------------------------------------------------------------------
LOCALIZE_DEMO = ["localize", "{store}", "--case", "{case}"]
GGUF_HEADER_ONLY = b"GGUF\x03\x00\x00\x00"  # the magic and a version, nothing after


def localize_local(model: Path, adapter: str | None = None) -> list[str]:
    """`localize` on the session's store with --policy local and the model (and adapter)."""
    argv = [*LOCALIZE_DEMO, "--policy", "local", "--model", str(model)]
    return argv + (["--adapter", adapter] if adapter else [])


# --- the corpus ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Malformed:
    name: str
    build: Callable[[Path], list[str]]  # writes the input under the folder; returns the argv
    exit_code: int
    line: str  # the exact stderr line; {d} is the entry's folder
    needs_store: bool = False  # the argv uses {store}: a valid store made once per session

    def resolved(self, folder: Path, store: Path, case: str) -> tuple[list[str], str]:
        """(argv, expected line) with {store}, {case} and {d} filled in; builds the input."""
        fill = {"{store}": str(store), "{case}": case, "{d}": str(folder)}
        argv, expected = self.build(folder), self.line
        for key, value in fill.items():
            argv = [arg.replace(key, value) for arg in argv]
            expected = expected.replace(key, value)
        return argv, expected


DAY = "{d}/src/rca_data/2023-01-29"
INGEST_ERRORS: list[Malformed] = [
    Malformed(
        "nezha-hour-mapped-to-a-number",
        lambda d: nezha(d, faults({"08": 5})),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: ['08']: expected a list of faults, found int. "
        'Fix: write each hour as "HH": [{"inject_time": ..., "inject_pod": ..., "inject_type": ...}]',
    ),
    Malformed(
        "nezha-inject-time-as-number",
        lambda d: nezha(
            d,
            faults({"08": [{"inject_time": 1674981784, "inject_pod": POD, "inject_type": "cpu"}]}),
        ),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: ['08'][0].inject_time: expected a non-empty "
        'string, found 1674981784. Fix: write it as text, e.g. "2023-01-29 08:43:04" for inject_time',
    ),
    Malformed(
        "nezha-inject-pod-null",
        lambda d: nezha(
            d,
            faults(
                {
                    "08": [
                        {
                            "inject_time": "2023-01-29 08:43:04",
                            "inject_pod": None,
                            "inject_type": "cpu",
                        }
                    ]
                }
            ),
        ),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: ['08'][0].inject_pod: expected a non-empty "
        'string, found None. Fix: write it as text, e.g. "2023-01-29 08:43:04" for inject_time',
    ),
    Malformed(
        "nezha-fault-list-not-utf8",
        lambda d: nezha(d, faults(b'{"08": [\xff\xfe]}')),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: byte 8: not UTF-8 text. "
        "Fix: save the fault list as UTF-8 JSON",
    ),
    Malformed(
        "nezha-fault-missing-field",
        lambda d: nezha(d, faults({"08": [{"inject_time": "2023-01-29 08:43:04"}]})),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: ['08'][0]: missing field(s) "
        "['inject_pod', 'inject_type']. Fix: add them",
    ),
    Malformed(
        "nezha-fault-list-is-an-array",
        lambda d: nezha(d, faults([1, 2])),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: top level: expected an object of hour -> list. "
        "Fix: check file",
    ),
    Malformed(
        "nezha-fault-time-malformed",
        lambda d: nezha(
            d,
            faults({"08": [{"inject_time": "yesterday", "inject_pod": POD, "inject_type": "cpu"}]}),
        ),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: ['08'][0].inject_time: malformed timestamp "
        "'yesterday'. Fix: write it as 'YYYY-MM-DD HH:MM:SS'",
    ),
    Malformed(
        "nezha-fault-list-invalid-json",
        lambda d: nezha(d, faults('{"08": [}')),
        2,
        f"error: {DAY}/2023-01-29-fault_list.json: line 1: invalid JSON (Expecting value). "
        "Fix: repair the file",
    ),
    Malformed(
        "nezha-trace-missing-column",
        lambda d: nezha(d, {"trace/08_43_trace.csv": "TraceID,SpanID\nt1,s1\n"}),
        2,
        f"error: {DAY}/trace/08_43_trace.csv: header: missing column(s) ParentID, PodName, "
        "OperationName, StartTimeUnixNano, Duration (found: TraceID, SpanID). Fix: a Nezha trace "
        "file needs the columns TraceID, SpanID, ParentID, PodName, OperationName, "
        "StartTimeUnixNano, Duration",
    ),
    Malformed(
        "nezha-trace-duration-not-a-number",
        lambda d: nezha(
            d,
            {"trace/08_43_trace.csv": NEZHA_TRACE.replace(",500000", ",slow")},
        ),
        2,
        f"error: {DAY}/trace/08_43_trace.csv: line 2, column 'Duration': value is not a valid "
        'BIGINT (Error when converting column "Duration". Could not convert string "slow" to '
        "'BIGINT'). Fix: write 'Duration' as BIGINT on "
        "every row",
    ),
    Malformed(
        "nezha-trace-empty-file",
        lambda d: nezha(d, {"trace/08_43_trace.csv": b""}),
        2,
        f"error: {DAY}/trace/08_43_trace.csv: line 1: the file is empty (no header row). "
        "Fix: re-export it",
    ),
    Malformed(
        "nezha-trace-truncated",
        lambda d: nezha(
            d, {"trace/08_43_trace.csv": textwrap.dedent(NEZHA_TRACE).lstrip() + 't2,"s2,'}
        ),
        2,
        f"error: {DAY}/trace/08_43_trace.csv: line 3: the file ends in the middle of a row "
        "(truncated?). Fix: re-copy or re-export the file completely",
    ),
    Malformed(
        "nezha-no-day-folder",
        lambda d: (
            (d / "src").mkdir() or ["ingest", "nezha", str(d / "src"), "--out", str(d / "store")]
        ),
        2,
        "error: {d}/src: no Nezha day folder found (expected rca_data/<day>/trace/*.csv). "
        "Fix: point at the data set root or at one rca_data/<day> folder",
    ),
    Malformed(
        "nezha-metric-duplicate-header",
        lambda d: nezha(
            d,
            {f"metric/{POD}_metric.csv": f"Time,TimeStamp,PodName,Cpu,Cpu\nx,{T0},{POD},1,2\n"},
        ),
        2,
        f"error: {DAY}/metric/{POD}_metric.csv: header: column name(s) 'Cpu' appear more than "
        "once. Fix: give every column its own name",
    ),
    Malformed(
        "nezha-metric-value-not-a-number",
        lambda d: nezha(d, {f"metric/{POD}_metric.csv": NEZHA_METRIC.replace(",12.5", ",high")}),
        2,
        f"error: {DAY}/metric/{POD}_metric.csv: line 2, column 'CpuUsageRate(%)': value is not a "
        'valid DOUBLE (Error when converting column "CpuUsageRate(%)". Could not convert string '
        "\"high\" to 'DOUBLE'). Fix: write "
        "'CpuUsageRate(%)' as DOUBLE on every row",
    ),
    Malformed(
        "nezha-binary-garbage-csv",
        lambda d: nezha(d, {"trace/08_43_trace.csv": b"\x00\x01\x1b[31mPK\x03\x04\xff\xfe"}),
        2,
        f"error: {DAY}/trace/08_43_trace.csv: header: missing column(s) TraceID, SpanID, "
        "ParentID, PodName, OperationName, StartTimeUnixNano, Duration (found: \\x00\\x01\\x1b[31mPK"
        "\\x03\\x04\\ufffd\\ufffd). Fix: a Nezha trace file needs the columns TraceID, SpanID, "
        "ParentID, PodName, OperationName, StartTimeUnixNano, Duration",
    ),
    Malformed(
        "aiops-groundtruth-empty-time",
        lambda d: aiops(d, "timestamp,level,cmdb_id,failure_type\n,pod,frontend-0,cpu\n"),
        2,
        "error: {d}/src/groundtruth.csv: line 2, column 'timestamp': no usable time (empty). "
        "Fix: write the fault's time as epoch seconds",
    ),
    Malformed(
        "aiops-groundtruth-unknown-level",
        lambda d: aiops(d, "timestamp,level,cmdb_id,failure_type\n1647770000,rack,r1,cpu\n"),
        2,
        "error: {d}/src/groundtruth.csv: line 2, column 'level': unknown level 'rack'. "
        "Fix: use service, pod or node",
    ),
    Malformed(
        "aiops-groundtruth-time-impossible",
        lambda d: aiops(
            d, "timestamp,level,cmdb_id,failure_type\n-99999999999,pod,frontend-0,cpu\n"
        ),
        2,
        "error: {d}/src/groundtruth.csv: line 2, column 'timestamp': no usable time (-99999999999). "
        "Fix: write the fault's time as epoch seconds",
    ),
    Malformed(
        "aiops-trace-missing-column",
        lambda d: aiops(d, trace="timestamp,cmdb_id\n1,a\n"),
        2,
        "error: {d}/src/trace/all/trace.csv: header: missing column(s) span_id, trace_id, "
        "duration, operation_name, parent_span (found: timestamp, cmdb_id). Fix: an AIOps 2022 "
        "trace file needs the columns timestamp, cmdb_id, span_id, trace_id, duration, "
        "operation_name, parent_span",
    ),
    Malformed(
        "aiops-source-is-a-file",
        lambda d: (
            _write(d / "src.csv", "x\n")
            and ["ingest", "aiops2022", str(d / "src.csv"), "--out", str(d / "store")]
        ),
        2,
        "error: {d}/src.csv: not a directory. Fix: point at the data set folder",
    ),
    Malformed(
        "otlp-top-level-array",
        lambda d: otlp(d, [spans_request(span())]),
        2,
        "error: {d}/src/export.json: line 1: expected a JSON object (an export request), found a "
        "list. Fix: each line must hold resourceSpans, resourceMetrics or resourceLogs",
    ),
    Malformed(
        "otlp-resource-spans-a-string",
        lambda d: otlp(d, {"resourceSpans": "many"}),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request ('resourceSpans' must be a "
        "list, not str). Fix: each line must hold resourceSpans, resourceMetrics or resourceLogs "
        "as the OTLP/JSON encoding defines them",
    ),
    Malformed(
        "otlp-resource-null",
        lambda d: otlp(
            d, {"resourceSpans": [{"resource": None, "scopeSpans": [{"spans": [span()]}]}]}
        ),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request (resource has no "
        "service.name). Fix: each line must hold resourceSpans, resourceMetrics or resourceLogs "
        "as the OTLP/JSON encoding defines them",
    ),
    Malformed(
        "otlp-status-a-string",
        lambda d: otlp(d, spans_request(span(status="ERROR"))),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request ('status' must be an "
        "object, not str). Fix: each line must hold resourceSpans, resourceMetrics or "
        "resourceLogs as the OTLP/JSON encoding defines them",
    ),
    Malformed(
        "otlp-binary-bytes",
        lambda d: otlp(d, b'{"resourceSpans": [\x00\xff\xfe]}'),
        2,
        "error: {d}/src/export.json: byte 20: not UTF-8 text (binary data?). "
        "Fix: give OTLP/JSON files only",
    ),
    Malformed(
        "otlp-nested-200k-deep",
        lambda d: otlp(d, "[" * 200_000 + "]" * 200_000),
        2,
        "error: {d}/src/export.json: line 1: the JSON is nested too deeply to be an OTLP export. "
        "Fix: check the file",
    ),
    Malformed(
        "otlp-trace-id-a-number",
        lambda d: otlp(d, spans_request(span(traceId=12345))),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request "
        "(resourceSpans[0].scopeSpans[0].spans[0].traceId: int, expected 32 hex digits). Fix: "
        "each line must hold resourceSpans, resourceMetrics or resourceLogs as the OTLP/JSON "
        "encoding defines them",
    ),
    Malformed(
        "otlp-scope-spans-null-item",
        lambda d: otlp(d, spans_request(scope=[None])),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request ('scopeSpans[0]' must be "
        "an object, not NoneType). Fix: each line must hold resourceSpans, resourceMetrics or "
        "resourceLogs as the OTLP/JSON encoding defines them",
    ),
    Malformed(
        "otlp-hello-world",
        lambda d: otlp(d, {"hello": 1}),
        2,
        "error: {d}/src: no spans, metric points or log records found. Fix: give OTLP/JSON export "
        "requests (resourceSpans, resourceMetrics, resourceLogs)",
    ),
    Malformed(
        "otlp-truncated",
        lambda d: otlp(d, json.dumps(spans_request(span()))[:-7]),
        2,
        "error: {d}/src/export.json: line 1: the JSON ends early (truncated?). "
        "Fix: re-export the file completely",
    ),
    Malformed(
        "otlp-empty-file",
        lambda d: otlp(d, ""),
        2,
        "error: {d}/src/export.json: line 1: the file is empty. Fix: re-export it",
    ),
    Malformed(
        "otlp-span-without-start",
        lambda d: otlp(d, spans_request({"traceId": "ab" * 16, "spanId": "cd" * 8})),
        2,
        "error: {d}/src/export.json: line 1: not an OTLP export request (missing field "
        "'startTimeUnixNano'). Fix: each line must hold resourceSpans, resourceMetrics or "
        "resourceLogs as the OTLP/JSON encoding defines them",
    ),
    Malformed(
        "unknown-format",
        lambda d: ["ingest", "parquet", str(d), "--out", str(d / "store")],
        2,
        "error: parquet: format: unknown format. Fix: use one of nezha, aiops2022, otlp",
    ),
    Malformed(
        "out-below-a-regular-file",
        lambda d: (
            _write(d / "file", "x")
            and ["ingest", "aiops2022", str(DEMO), "--out", str(d / "file" / "store")]
        ),
        2,
        "error: {d}/file: is a file, so no store can be made below it. Fix: choose another --out",
    ),
    Malformed(
        "out-name-250-characters",
        lambda d: ["ingest", "aiops2022", str(DEMO), "--out", str(d / ("s" * 250))],
        2,
        "error: {d}/" + "s" * 250 + ": the name is 250 characters; the store is built beside it "
        "under a longer hidden name that must fit in 255. Fix: choose a shorter --out",
    ),
    Malformed(
        "out-is-not-a-store",
        lambda d: (
            _write(d / "mine" / "keep.txt", "x")
            and ["ingest", "aiops2022", str(DEMO), "--out", str(d / "mine"), "--force"]
        ),
        2,
        "error: {d}/mine: exists and is not a ThinkFL store; refusing to replace it. Fix: choose another --out",
    ),
    Malformed(
        "aiops-header-with-bom",
        lambda d: aiops(d, trace="\ufeff" + textwrap.dedent(AIOPS_TRACE).lstrip("\n")),
        2,
        "error: {d}/src/trace/all/trace.csv: line 1: the header starts with a UTF-8 byte-order "
        "mark (BOM, bytes EF BB BF), which would become part of the column name 'timestamp'. "
        "Fix: save the file as UTF-8 without a BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)",
    ),
    Malformed(
        "aiops-epoch-of-30-digits",
        lambda d: aiops(d, trace=AIOPS_TRACE.replace("1647770000000", "1" * 30)),
        2,
        "error: {d}/src/trace/all/trace.csv: line 2, column 'timestamp': a 30-digit number, too "
        "long for any epoch time (seconds have 10 digits, ms 13, µs 16, ns 19) and for a 64-bit "
        "integer. Fix: write 'timestamp' as an epoch time in the unit this layout documents",
    ),
    Malformed(
        "otlp-start-of-30-digits",
        lambda d: otlp(d, spans_request(span(startTimeUnixNano="1" * 30))),
        2,
        "error: {d}/src/export.json: line 1: 'start' 111111111111111111111111111111: a 30-digit "
        "number, too long for any epoch time (seconds have 10 digits, ms 13, µs 16, ns 19). "
        "Fix: write nanoseconds since the epoch (UTC)",
    ),
]

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"

OPTION_ERRORS: list[Malformed] = [
    Malformed(
        "localize-max-depth-0",
        lambda d: ["localize", "{store}", "--case", "x", "--max-depth", "0"],
        2,
        "error: Invalid value for '--max-depth': Input should be greater than or equal to 1. "
        "Fix: see `thinkfl localize --help`",
        needs_store=True,
    ),
    Malformed(
        "cases-latency-factor-negative",
        lambda d: ["cases", "{store}", "--latency-factor", "-1"],
        2,
        "error: Invalid value for '--latency-factor': must be > 1 (a factor over the normal "
        "duration), not -1.0. Fix: see `thinkfl cases --help`",
        needs_store=True,
    ),
    Malformed(
        "cases-latency-factor-nan",
        lambda d: ["cases", "{store}", "--latency-factor", "nan"],
        2,
        "error: Invalid value for '--latency-factor': latency_factor must be a finite number, not "
        "nan. Fix: see `thinkfl cases --help`",
        needs_store=True,
    ),
    Malformed(
        "cases-after-s-zero",
        lambda d: ["cases", "{store}", "--after-s", "0"],
        2,
        "error: Invalid value for '--after-s': must be > 0, not 0.0. Fix: see `thinkfl cases --help`",
        needs_store=True,
    ),
    Malformed(
        "eval-cases-negative",
        lambda d: ["eval", "-d", "{store}", "-p", "expert", "--out", str(d / "o"), "--cases", "-1"],
        2,
        "error: Invalid value for '--cases': Input should be greater than or equal to 0. "
        "Fix: see `thinkfl eval --help`",
        needs_store=True,
    ),
    Malformed(
        "eval-workers-zero",
        lambda d: [
            "eval",
            "-d",
            "{store}",
            "-p",
            "expert",
            "--out",
            str(d / "o"),
            "--workers",
            "0",
        ],
        2,
        "error: Invalid value for '--workers': Input should be greater than or equal to 1. "
        "Fix: see `thinkfl eval --help`",
        needs_store=True,
    ),
    Malformed(
        "eval-out-is-a-file",
        lambda d: (
            _write(d / "o", "x")
            and ["eval", "-d", "{store}", "-p", "expert", "--out", str(d / "o")]
        ),
        2,
        "error: {d}/o: exists and is a file, not a results folder. Fix: choose another --out",
        needs_store=True,
    ),
    Malformed(
        "eval-unknown-method",
        lambda d: ["eval", "-d", "{store}", "-p", "oracle", "--out", str(d / "o")],
        2,
        "error: unknown method(s) ['oracle']. Methods: expert, hf, local, openai, baro, evidence, "
        "microrank, most-frequent, n-sigma, random, tracerca",
        needs_store=True,
    ),
    Malformed(
        "simulate-cases-negative",
        lambda d: ["simulate", "easy", "--out", str(d / "s"), "--cases", "-5"],
        2,
        "error: Invalid value for '--cases': Input should be greater than or equal to 1. "
        "Fix: see `thinkfl simulate --help`",
    ),
    Malformed(
        "simulate-system-generated-abc",
        lambda d: ["simulate", "easy", "--out", str(d / "s"), "--system", "generated:abc"],
        2,
        "error: --system generated:abc: the size after 'generated:' must be a whole number of "
        "services, e.g. generated:40",
    ),
    Malformed(
        "simulate-unknown-preset",
        lambda d: ["simulate", "brutal", "--out", str(d / "s")],
        2,
        "error: unknown preset 'brutal'. Presets: easy, realistic, hard",
    ),
    Malformed(
        "ingest-max-bad-rows-negative",
        lambda d: ["ingest", "aiops2022", str(DEMO), "--out", str(d / "s"), "--max-bad-rows", "-1"],
        2,
        "error: Invalid value for '--max-bad-rows': Input should be greater than or equal to 0. "
        "Fix: see `thinkfl ingest --help`",
    ),
    Malformed(
        "ingest-invalid-rows-policy",
        lambda d: [
            "ingest",
            "aiops2022",
            str(DEMO),
            "--out",
            str(d / "s"),
            "--invalid-rows",
            "keep",
        ],
        2,
        "error: Invalid value for '--invalid-rows': Value error, 'keep' is not one of 'skip', "
        "'fail'. Fix: see `thinkfl ingest --help`",
    ),
    Malformed(
        "localize-save-a-folder",
        lambda d: (
            (d / "t").mkdir() or ["localize", "{store}", "--case", "{case}", "--save", str(d / "t")]
        ),
        2,
        "error: {d}/t: is a folder; --save appends to a JSONL file. Fix: give a file path",
        needs_store=True,
    ),
    Malformed(
        "localize-unknown-case",
        lambda d: ["localize", "{store}", "--case", "nope"],
        2,
        "error: {store}: no case 'nope'. Known cases include: {case}",
        needs_store=True,
    ),
    Malformed(
        "cases-no-such-store",
        lambda d: ["cases", str(d / "nowhere")],
        2,
        "error: {d}/nowhere: no such store. Fix: create one with `thinkfl ingest`",
    ),
    Malformed(
        "localize-model-not-gguf",
        lambda d: localize_local(_write(d / "model.gguf", "not a model\n")),
        2,
        "error: {d}/model.gguf: not a GGUF file (it starts with b'not ', a GGUF starts with "
        "b'GGUF'), so it cannot be a model for --policy local. Fix: give a .gguf model file "
        "(convert a Hugging Face model with llama.cpp's convert_hf_to_gguf.py), or use "
        "--policy hf for a Hugging Face model directory",
        needs_store=True,
    ),
    Malformed(
        "localize-model-a-truncated-gguf",
        lambda d: localize_local(_write(d / "model.gguf", GGUF_HEADER_ONLY), "none"),
        2,
        "error: {d}/model.gguf: llama.cpp cannot load this model (a damaged, truncated or "
        "unsupported GGUF): Failed to load model from file: {d}/model.gguf. Fix: give --model "
        "a GGUF file llama.cpp loads and --adapter an adapter.gguf trained for that model "
        "(or 'none')",
        needs_store=True,
    ),
    Malformed(
        "localize-adapter-garbage",
        lambda d: localize_local(
            _write(d / "model.gguf", GGUF_HEADER_ONLY), str(_write(d / "adapter.gguf", "garbage\n"))
        ),
        2,
        "error: {d}/adapter.gguf: not a GGUF file (it starts with b'garb', a GGUF starts with "
        "b'GGUF'), so it cannot be a LoRA adapter. Fix: give the adapter.gguf a training stage "
        "wrote (RUN/<stage>/adapter.gguf), or 'none' for the base model",
        needs_store=True,
    ),
    Malformed(
        "localize-hf-an-empty-folder",
        lambda d: (
            (d / "hf").mkdir() or [*LOCALIZE_DEMO, "--policy", "hf", "--model", str(d / "hf")]
        ),
        2,
        "error: {d}/hf: no config.json or adapter_config.json, so not a Hugging Face model "
        "directory. Fix: give the folder `save_pretrained` wrote (config.json and its weights), "
        "e.g. `thinkfl models export-hf`'s output, or use --policy local with a .gguf file",
        needs_store=True,
    ),
    Malformed(
        "serve-empty-token-file",
        lambda d: [
            "serve",
            "--store",
            str(d / "store"),
            "--port",
            "1",
            "--token-file",
            str(_write(d / "token", "\n")),
        ],
        2,
        "error: {d}/token: the token file is empty, and an empty file must not turn "
        "authentication off. Fix: write the bearer token into it (e.g. `openssl rand -hex 32 > "
        "{d}/token`)",
    ),
]

CORPUS = INGEST_ERRORS + OPTION_ERRORS


def main(out: Path) -> None:  # pragma: no cover - a helper for people
    for entry in CORPUS:
        folder = out / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        argv = entry.build(folder)
        (folder / "command.txt").write_text("thinkfl " + " ".join(argv) + "\n", encoding="utf-8")
    print(f"{len(CORPUS)} malformed inputs under {out}")


if __name__ == "__main__":  # pragma: no cover
    main(Path(sys.argv[1]))
