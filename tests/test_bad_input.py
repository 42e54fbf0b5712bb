"""Bad input fails with one message naming the file, the place and the fix; no store remains."""

from __future__ import annotations

import json

import pytest

from conftest import leftovers, write
from thinkfl.telemetry import IngestError, ingest
from thinkfl.telemetry.ingest.csvread import BadRowBudget, read_csv_checked

TRACE_HEADER = (
    "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
)
GOOD_SPAN = (
    "t1,s1,root,ts-a-service-5dc8d4f9fd-46997,/*,1674981790000000000,1674981790100000000,1000"
)


def nezha_day(tmp_path, trace_text: str):
    day = tmp_path / "src" / "rca_data" / "2023-01-29"
    write(day / "trace" / "08_43_trace.csv", trace_text)
    write(day / "2023-01-29-fault_list.json", '{"08": []}')
    return tmp_path / "src"


def assert_fails_cleanly(tmp_path, fmt, src, *fragments):
    out = tmp_path / "out" / "store"
    with pytest.raises(IngestError) as caught:
        ingest(fmt, src, out)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    if out.parent.exists():
        assert leftovers(out.parent) == []
    return message


def test_missing_column_names_file_and_column(tmp_path):
    header = TRACE_HEADER.replace(",Duration", "")
    src = nezha_day(tmp_path, f"{header}\n{GOOD_SPAN.rsplit(',', 1)[0]}\n")
    assert_fails_cleanly(tmp_path, "nezha", src, "08_43_trace.csv", "header", "Duration", "Fix:")


def test_malformed_timestamp_names_line_and_column(tmp_path):
    bad = GOOD_SPAN.replace("1674981790000000000", "2023-01-29T08:43:10Z", 1)
    src = nezha_day(tmp_path, f"{TRACE_HEADER}\n{GOOD_SPAN}\n{bad}\n{GOOD_SPAN}\n")
    assert_fails_cleanly(
        tmp_path, "nezha", src, "08_43_trace.csv", "line 3", "StartTimeUnixNano", "BIGINT"
    )


def test_truncated_csv_is_refused(tmp_path):
    cut = GOOD_SPAN[: len(GOOD_SPAN) // 2]
    src = nezha_day(tmp_path, f"{TRACE_HEADER}\n{GOOD_SPAN}\n{cut}")
    assert_fails_cleanly(tmp_path, "nezha", src, "08_43_trace.csv", "line 3", "truncated")


def test_truncated_otlp_json_is_refused(tmp_path):
    line = json.dumps({"resourceSpans": []})
    write(tmp_path / "otel" / "a.jsonl", f"{line}\n{line}\n{line[:-5]}")
    assert_fails_cleanly(tmp_path, "otlp", tmp_path / "otel", "a.jsonl", "line 3", "truncated")


@pytest.mark.parametrize("fmt", ["nezha", "aiops2022", "otlp"])
def test_empty_directory(tmp_path, fmt):
    (tmp_path / "empty").mkdir()
    assert_fails_cleanly(tmp_path, fmt, tmp_path / "empty", "empty", "Fix:")


def test_empty_file(tmp_path):
    src = nezha_day(tmp_path, "")
    assert_fails_cleanly(tmp_path, "nezha", src, "08_43_trace.csv", "empty")


def test_malformed_label_time(tmp_path):
    src = nezha_day(tmp_path, f"{TRACE_HEADER}\n{GOOD_SPAN}\n")
    write(
        src / "rca_data" / "2023-01-29" / "2023-01-29-fault_list.json",
        '{"08": [{"inject_time": "29/01/2023 08:43", "inject_pod": "p", "inject_type": "cpu"}]}',
    )
    assert_fails_cleanly(tmp_path, "nezha", src, "fault_list.json", "inject_time", "YYYY-MM-DD")


def test_unknown_format(tmp_path):
    with pytest.raises(IngestError, match="use one of nezha, aiops2022, otlp"):
        ingest("jaeger-v0", tmp_path, tmp_path / "out")


def test_a_spliced_row_mid_file_is_skipped_and_reported(tmp_path):
    spliced = GOOD_SPAN + ",1674981790000000000,extra"  # two rows run together
    src = nezha_day(
        tmp_path, f"{TRACE_HEADER}\n{GOOD_SPAN}\n{spliced}\n{GOOD_SPAN.replace('s1', 's2')}\n"
    )
    result = ingest("nezha", src, tmp_path / "store")
    assert result.counts["spans"] == 2
    assert result.skipped_rows == [
        f"{src}/rca_data/2023-01-29/trace/08_43_trace.csv:3: too many columns"
    ]


def test_too_many_malformed_rows_fail(tmp_path):
    spliced = GOOD_SPAN + ",1674981790000000000,extra"
    rows = "\n".join([GOOD_SPAN, spliced, spliced, GOOD_SPAN.replace("s1", "s2")])
    src = nezha_day(tmp_path, f"{TRACE_HEADER}\n{rows}\n")
    out = tmp_path / "store"
    with pytest.raises(IngestError, match="more than 1 malformed rows"):
        ingest("nezha", src, out, max_bad_rows=1)
    assert not out.exists()


def test_unknown_label_level_names_the_line(tmp_path):
    src = tmp_path / "ai"
    write(
        src / "trace" / "all" / "t.csv",
        "timestamp,cmdb_id,span_id,trace_id,duration,type,status_code,operation_name,parent_span\n"
        "1647747340693,frontend-2,r1,t1,1000,http,0,Recv,\n",
    )
    write(
        src / "groundtruth.csv", "timestamp,level,cmdb_id,failure_type\n1647747326,cluster,x,cpu\n"
    )
    assert_fails_cleanly(tmp_path, "aiops2022", src, "groundtruth.csv", "line 2", "'cluster'")


def test_otlp_span_without_start_time_names_the_line(tmp_path):
    request = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]
                },
                "scopeSpans": [
                    {"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x"}]}
                ],
            }
        ]
    }
    write(
        tmp_path / "otel" / "a.jsonl",
        json.dumps({"resourceSpans": []}) + "\n" + json.dumps(request) + "\n",
    )
    assert_fails_cleanly(
        tmp_path, "otlp", tmp_path / "otel", "a.jsonl", "line 2", "startTimeUnixNano"
    )


def test_large_fields_are_read_and_a_too_long_row_is_reported(tmp_path):
    """A 5 MB log line is data; a broken row with a 50 MB field and a row past the 64 MB
    limit are skipped and listed, never lost without a word."""
    path = tmp_path / "big.csv"
    five = "x" * (5 * 2**20)
    path.write_text(
        f'a,b\n1,"{five}"\n2,"{"y" * (50 * 2**20)}"x,extra\n3,"{"z" * (70 * 2**20)}"\n4,four\n'
    )
    budget = BadRowBudget()
    table = read_csv_checked(path, {"a": "BIGINT", "b": "VARCHAR"}, budget)
    assert table.column("a").to_pylist() == [1, 4]
    assert len(table.column("b")[0].as_py()) == len(five)
    assert budget.skipped == [
        f"{path}:3: too many columns/unquoted value",
        f"{path}:4: row longer than 64 MB",
    ]


def test_impossible_values_are_counted_not_stored_nor_fatal(tmp_path):
    """A "NaN" metric value: the ingest goes on, the row is left out and listed with its
    reason."""
    from malformed import T0, otlp, span, spans_request

    nan_metric = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "cpu",
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": str(T0 * 10**9), "asDouble": "NaN"},
                                        {"timeUnixNano": str(T0 * 10**9), "asDouble": 0.5},
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    otlp(tmp_path / "o", "\n".join(json.dumps(r) for r in [spans_request(span()), nan_metric]))
    result = ingest("otlp", tmp_path / "o" / "src", tmp_path / "o" / "store")
    assert sorted((r.table, r.reason, r.count) for r in result.rejected_rows) == [
        ("metrics", "non-finite value (NaN or infinity)", 1),
    ]
    assert (result.counts["spans"], result.counts["metrics"]) == (1, 1)


def test_times_in_another_unit_are_refused_with_the_unit_named(tmp_path):
    """OTLP start times in seconds or milliseconds, Nezha times in seconds, a metric time of
    1e17 s: nothing is stored at 1970 (or past 2262); the fix names the unit."""
    from malformed import NEZHA_METRIC, NEZHA_TRACE, POD, T0, nezha, ns, otlp, span, spans_request

    cases = {
        "seconds": (str(T0), "looks like seconds (multiply by 1000000000)"),
        "millis": (str(T0 * 1000), "looks like milliseconds (multiply by 1000000)"),
    }
    for name, (start, fix) in cases.items():
        otlp(tmp_path / name, spans_request(span(startTimeUnixNano=start, endTimeUnixNano=start)))
        with pytest.raises(IngestError) as caught:
            ingest("otlp", tmp_path / name / "src", tmp_path / name / "store")
        assert "before 2000" in str(caught.value) and fix in str(caught.value)
        assert not (tmp_path / name / "store").exists()
    seconds_trace = NEZHA_TRACE.replace(str(ns(T0 + 10)), str(T0 + 10))
    nezha(tmp_path / "n", {"trace/08_43_trace.csv": seconds_trace})
    with pytest.raises(IngestError) as caught:
        ingest("nezha", tmp_path / "n" / "src", tmp_path / "n" / "store")
    assert "column 'StartTimeUnixNano'" in str(caught.value)
    assert "looks like seconds" in str(caught.value)
    nezha(tmp_path / "m", {f"metric/{POD}_metric.csv": NEZHA_METRIC.replace(f",{T0},", ",1e17,")})
    with pytest.raises(IngestError) as caught:
        ingest("nezha", tmp_path / "m" / "src", tmp_path / "m" / "store")
    assert "column 'TimeStamp'" in str(caught.value) and "after tomorrow" in str(caught.value)


def test_a_boolean_start_time_and_non_hex_ids_are_refused_by_ingest(tmp_path):
    from malformed import otlp, span, spans_request

    for name, bad in {
        "bool": span(startTimeUnixNano=True),
        "hex": span(traceId="z" * 32),
        "prefix": span(spanId="0x" + "a" * 14),
    }.items():
        otlp(tmp_path / name, spans_request(bad))
        with pytest.raises(IngestError):
            ingest("otlp", tmp_path / name / "src", tmp_path / name / "store")
