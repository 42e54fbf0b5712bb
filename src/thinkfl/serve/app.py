"""`thinkfl serve`: OTLP/HTTP in, Alertmanager alerts in, investigations out (JSON and a
report page). FastAPI; run with uvicorn.

Endpoints (all but /healthz need `Authorization: Bearer <token>` when a token is set):
    POST /v1/traces, /v1/metrics, /v1/logs   OTLP/HTTP, protobuf or JSON
    POST /v1/alerts                          Alertmanager webhook, payload version 4
    POST /v1/investigations                  {"case_id": ...} or {"at": ISO time, "service": ...}
    GET  /v1/cases, /v1/investigations, /v1/investigations/{id}
    GET  /investigations/{id}                the report page
    GET  /healthz                            liveness; /docs  the OpenAPI page
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from thinkfl.agent import Budget
from thinkfl.agent.policy import Policy
from thinkfl.evidence.start import case_by_id, case_starting_at
from thinkfl.serve import otlp
from thinkfl.serve.alerts import AlertmanagerPayload, case_of
from thinkfl.serve.body import BodyTooLarge, inflate_gzip, over_limit
from thinkfl.serve.investigations import (
    Investigation,
    Investigations,
    QueueFull,
    Status,
    post_result,
)
from thinkfl.serve.report import render_report
from thinkfl.telemetry import TelemetryError, TelemetryStore
from thinkfl.telemetry.live import LiveStore
from thinkfl.telemetry.model import CaseId

log = logging.getLogger("thinkfl.serve")
RESPONSES: dict[str, tuple[Any, str, str, str]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans", "rejectedSpans", "spans"),
    "metrics": (
        ExportMetricsServiceResponse,
        "rejected_data_points",
        "rejectedDataPoints",
        "metrics",
    ),
    "logs": (ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords", "logs"),
}
ALERTS_LOG = "alerts.jsonl"


class ServeSettings(BaseModel):
    """Everything `thinkfl serve` can be told (see `thinkfl serve --help`)."""

    store: Path
    token: str | None = Field(None, description="bearer token; None only on a loopback address")
    max_body_bytes: int = Field(16 * 2**20, ge=1024, description="largest request body accepted")
    workers: int = Field(2, ge=1, description="investigations run at once")
    queue_size: int = Field(16, ge=1, description="investigations waiting; more answer 429")
    retention_hours: float | None = Field(None, gt=0, description="drop batches older than this")
    result_webhook: str | None = Field(None, description="POST each finished investigation here")
    budget: Budget = Field(default_factory=Budget)


class InvestigationRequest(BaseModel):
    """A case by id, or by a time (UTC) and optionally a service."""

    case_id: CaseId | None = None
    at: datetime | None = None
    service: str | None = None


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings: ServeSettings, make_policy: Callable[[], Policy]) -> FastAPI:
    """The server over one store; `make_policy` gives each investigation its investigator."""
    live = LiveStore(settings.store)
    cases_lock = threading.Lock()

    def notify(item: Investigation) -> None:
        if settings.result_webhook:
            post_result(settings.result_webhook, item)

    def page_of(store: TelemetryStore, item: Investigation) -> str:
        if item.trajectory is None:
            raise ValueError(f"investigation {item.id} has no trajectory to show")
        return render_report(store, item.case, item.trajectory)

    investigations = Investigations(
        settings.store,
        make_policy,
        workers=settings.workers,
        queue_size=settings.queue_size,
        budget=settings.budget,
        on_done=notify if settings.result_webhook else None,
        render=page_of,
    )
    stop = threading.Event()

    def retention_loop() -> None:
        while settings.retention_hours and not stop.wait(60):
            dropped = live.retain(settings.retention_hours)
            if dropped:
                log.info("retention: dropped %d batches", len(dropped))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=retention_loop, daemon=True, name="retention").start()
        yield
        stop.set()
        investigations.close()

    app = FastAPI(
        title="ThinkFL",
        summary="Failure localization: OTLP and Alertmanager in, ranked root causes out.",
        lifespan=lifespan,
    )
    app.state.live = live
    app.state.investigations = investigations

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _problem(error.status_code, f"{request.url.path[:100]}: {error.detail}")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if settings.token and request.url.path != "/healthz":
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
                return _problem(
                    401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
                )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return _problem(
                413, f"body of {length} bytes: the limit is {settings.max_body_bytes} bytes"
            )
        response: Response = await call_next(request)
        return response

    async def body_of(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise over_limit(settings.max_body_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding in ("", "identity"):
            return body
        if encoding != "gzip":
            raise otlp.RequestError(f"Content-Encoding '{encoding[:30]}': send gzip or none")
        return await run_in_threadpool(inflate_gzip, body, settings.max_body_bytes)

    async def receive(signal: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        try:
            decoded = otlp.decode(signal, content_type, await body_of(request))
            tables, refused = otlp.rows(signal, decoded)
        except otlp.RequestError as error:
            return _problem(_status_of(error), str(error))
        result = await run_in_threadpool(live.append, tables)
        refused += result.rejected
        response_type, field, json_field, table = RESPONSES[signal]
        rejected = sum(r.count for r in refused if r.table == table)
        reason = "; ".join(f"{r.count} {r.table}: {r.reason}" for r in refused)
        if content_type.split(";")[0].strip().lower() == otlp.JSON:
            body: dict[str, Any] = {}
            if refused:
                body["partialSuccess"] = {json_field: rejected, "errorMessage": reason}
            return JSONResponse(body)
        message = response_type()
        if refused:
            setattr(message.partial_success, field, rejected)
            message.partial_success.error_message = reason
        return Response(message.SerializeToString(), media_type=otlp.PROTOBUF)

    @app.post("/v1/traces", summary="OTLP/HTTP traces (protobuf or JSON)")
    async def traces(request: Request) -> Response:
        return await receive("traces", request)

    @app.post("/v1/metrics", summary="OTLP/HTTP metrics (protobuf or JSON)")
    async def metrics(request: Request) -> Response:
        return await receive("metrics", request)

    @app.post("/v1/logs", summary="OTLP/HTTP logs (protobuf or JSON)")
    async def logs(request: Request) -> Response:
        return await receive("logs", request)

    def remember_case(store: TelemetryStore, case: Any) -> None:
        with cases_lock:
            known = [c for c in store.cases() if c.case_id != case.case_id]
            store.save_cases([*known, case])

    def alerts_sync(payload: AlertmanagerPayload) -> JSONResponse:
        started, resolved, skipped = [], 0, []
        store = live.open()
        try:
            with (settings.store / ALERTS_LOG).open("a", encoding="utf-8") as record:
                for alert in payload.alerts:
                    record.write(alert.model_dump_json() + "\n")
                    if alert.status == "resolved":
                        resolved += 1
                        continue
                    try:
                        case = case_of(alert, store)
                    except TelemetryError as error:
                        skipped.append({"fingerprint": alert.fingerprint, "reason": str(error)})
                        continue
                    remember_case(store, case)
                    item = investigations.submit(case, f"alert {alert.fingerprint}".strip())
                    started.append(item.id)
        except QueueFull as error:
            return JSONResponse(
                {"error": f"{error}; retry later", "investigations": started}, status_code=429
            )
        finally:
            store.close()
        return JSONResponse(
            {"investigations": started, "resolved": resolved, "skipped": skipped},
            status_code=202 if started else 200,
        )

    @app.post("/v1/alerts", summary="Alertmanager webhook (payload version 4)")
    async def alerts(request: Request) -> Response:
        try:
            payload = AlertmanagerPayload.model_validate_json(await body_of(request))
        except ValidationError as error:
            return _problem(400, _validation_message(error))
        except otlp.RequestError as error:
            return _problem(_status_of(error), str(error))
        return await run_in_threadpool(alerts_sync, payload)

    def investigate_sync(asked: InvestigationRequest) -> JSONResponse:
        store = live.open()
        try:
            if asked.case_id:
                case = case_by_id(store, asked.case_id)
            elif asked.at:
                case = case_starting_at(store, asked.at, asked.service)
                remember_case(store, case)
            else:
                return _problem(400, "give case_id, or at (an ISO time) with an optional service")
            item = investigations.submit(case, "api")
        except TelemetryError as error:
            return _problem(404, str(error))
        except QueueFull as error:
            return _problem(429, f"{error}; retry later")
        finally:
            store.close()
        return JSONResponse({"id": item.id, "status": item.status.value}, status_code=202)

    @app.post("/v1/investigations", summary="Investigate a case by id or by time + service")
    async def investigate(request: Request) -> Response:
        try:
            asked = InvestigationRequest.model_validate_json(await body_of(request))
        except ValidationError as error:
            return _problem(400, _validation_message(error))
        except otlp.RequestError as error:
            return _problem(_status_of(error), str(error))
        return await run_in_threadpool(investigate_sync, asked)

    @app.get("/v1/cases", summary="The store's cases (labelled, detected, from alerts)")
    def cases() -> JSONResponse:
        store = live.open()
        try:
            return JSONResponse([json.loads(c.model_dump_json()) for c in store.cases()])
        finally:
            store.close()

    @app.get("/v1/investigations", summary="Every investigation, oldest first (no trajectories)")
    def all_investigations() -> JSONResponse:
        return JSONResponse(
            [
                {**json.loads(i.model_dump_json(exclude={"trajectory"})), "causes": i.causes()}
                for i in investigations.all()
            ]
        )

    @app.get("/v1/investigations/{investigation_id}", summary="Status, causes, trajectory")
    def one_investigation(investigation_id: str) -> JSONResponse:
        item = investigations.get(investigation_id)
        if item is None:
            return _problem(404, f"no investigation '{investigation_id[:40]}'")
        payload = json.loads(item.model_dump_json())
        payload["causes"] = item.causes()
        return JSONResponse(payload)

    @app.get("/investigations/{investigation_id}", response_class=HTMLResponse)
    def report_page(investigation_id: str) -> Response:
        item = investigations.get(investigation_id)
        if item is None:
            return _problem(404, f"no investigation '{investigation_id[:40]}'")
        page = investigations.page(item.id)
        if item.status not in (Status.DONE, Status.FAILED) or not page.is_file():
            return HTMLResponse(
                f"<!doctype html><meta http-equiv=refresh content=2><p>investigation "
                f"{item.id}: {item.status.value}</p>",
                status_code=202 if item.status in (Status.QUEUED, Status.RUNNING) else 500,
            )
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _status_of(error: otlp.RequestError) -> int:
    """413 for a body over the limit, 415 for a content type we do not read, else 400."""
    if isinstance(error, BodyTooLarge):
        return 413
    return 415 if str(error).startswith("Content-Type") else 400


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:5]
    )
