"""Investigations run by the server: a bounded queue, a pool of workers, results on disk.

Each investigation is a case (from an alert, a time window + service, or a case id) run
through the agent loop. Results are kept in memory and written to
`STORE/investigations/<id>.json` (temp file, then rename), so a restart still serves them.
A full queue refuses new work (`QueueFull`): nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from thinkfl.agent import Budget, Finish, Trajectory, run_case
from thinkfl.agent.policy import Policy
from thinkfl.files import atomic_write
from thinkfl.telemetry import FailureCase, TelemetryStore
from thinkfl.tools import Toolbox

log = logging.getLogger("thinkfl.serve")
FOLDER = "investigations"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Investigation(BaseModel):
    """One investigation as the API shows it."""

    id: str
    status: Status
    case: FailureCase
    source: str = Field(description="what asked for it: 'alert <fingerprint>', 'api', ...")
    created: datetime
    finished: datetime | None = None
    error: str | None = None
    trajectory: Trajectory | None = None

    def causes(self) -> list[dict[str, str]]:
        """The ranked causes as JSON objects: [{"level": ..., "name": ...}, ...]."""
        ranking = self.trajectory.ranking if self.trajectory else []
        return [candidate.model_dump(mode="json") for candidate in ranking]


class QueueFull(Exception):
    """More investigations waiting than the queue holds."""


class Investigations:
    """The queue, the workers and the results of one server."""

    def __init__(
        self,
        store_path: Path,
        make_policy: Callable[[], Policy],
        workers: int = 2,
        queue_size: int = 16,
        budget: Budget | None = None,
        on_done: Callable[[Investigation], None] | None = None,
        render: Callable[[TelemetryStore, Investigation], str] | None = None,
    ) -> None:
        self.store_path = store_path
        self.folder = store_path / FOLDER
        self.folder.mkdir(exist_ok=True)
        self.make_policy = make_policy
        self.budget = budget or Budget()
        self.queue_size = queue_size
        self.on_done = on_done
        self.render = render
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="investigate")
        self._lock = threading.Lock()
        self._waiting = 0
        self._items: dict[str, Investigation] = {}
        self._load()

    def _load(self) -> None:
        for file in sorted(self.folder.glob("*.json")):
            try:
                item = Investigation.model_validate_json(file.read_bytes())
            except ValueError:
                log.warning("unreadable investigation file %s skipped", file)
                continue
            if item.status in (Status.QUEUED, Status.RUNNING):  # the server stopped meanwhile
                item.status, item.error = Status.FAILED, "the server stopped before it finished"
            self._items[item.id] = item

    def submit(self, case: FailureCase, source: str) -> Investigation:
        with self._lock:
            if self._waiting >= self.queue_size:
                raise QueueFull(
                    f"{self._waiting} investigations are waiting (queue size {self.queue_size})"
                )
            self._waiting += 1
            item = Investigation(
                id=uuid.uuid4().hex[:12],
                status=Status.QUEUED,
                case=case,
                source=source,
                created=datetime.now(UTC),
            )
            self._items[item.id] = item
        self._save(item)
        self._pool.submit(self._run, item.id)
        return item

    def get(self, investigation_id: str) -> Investigation | None:
        return self._items.get(investigation_id)

    def all(self) -> list[Investigation]:
        return sorted(self._items.values(), key=lambda i: i.created)

    def _run(self, investigation_id: str) -> None:
        item = self._items[investigation_id]
        with self._lock:
            self._waiting -= 1
        item.status = Status.RUNNING
        began = time.monotonic()
        store = TelemetryStore.open(self.store_path)
        try:
            trajectory = run_case(Toolbox(store, item.case), self.make_policy(), self.budget)
            item.trajectory = trajectory
            item.error = trajectory.error
            if self.render:  # the page shows the evidence as it was when the answer was given
                self._write(self.page(item.id), self.render(store, item))
            item.status = Status.FAILED if trajectory.finish == Finish.ERROR else Status.DONE
        except Exception as error:  # one investigation's failure is reported, not fatal
            item.status, item.error = Status.FAILED, f"{type(error).__name__}: {error}"
        finally:
            store.close()
        item.finished = datetime.now(UTC)
        self._save(item)
        log.info(
            "investigation %s %s in %.1f s: %s",
            item.id,
            item.status.value,
            time.monotonic() - began,
            item.causes()[:3],
        )
        if self.on_done:
            self.on_done(item)

    def page(self, investigation_id: str) -> Path:
        """The report page written when the investigation ended."""
        return self.folder / f"{investigation_id}.html"

    def _save(self, item: Investigation) -> None:
        self._write(self.folder / f"{item.id}.json", item.model_dump_json())

    @staticmethod
    def _write(file: Path, text: str) -> None:
        atomic_write(file, text)

    def wait(self, investigation_id: str, timeout_s: float = 60.0) -> Investigation:
        """Block until an investigation ends (for tests and the CLI)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            item = self._items[investigation_id]
            if item.status in (Status.DONE, Status.FAILED):
                return item
            time.sleep(0.05)
        raise TimeoutError(f"investigation {investigation_id} still running after {timeout_s} s")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def post_result(url: str, item: Investigation) -> None:
    """The outgoing webhook: the finished investigation as JSON; failures are logged."""
    payload: dict[str, Any] = json.loads(item.model_dump_json(exclude={"trajectory"}))
    payload["causes"] = item.causes()
    try:
        httpx.post(url, json=payload, timeout=10.0).raise_for_status()
    except httpx.HTTPError as error:
        log.warning("result webhook %s failed for %s: %s", url, item.id, error)
