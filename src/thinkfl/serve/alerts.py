"""Prometheus Alertmanager webhook payloads (version 4) and the cases they start.

A firing alert becomes a case: its time is `startsAt`, its scope the first of the labels
`service`, `service_name`, `job`, `app`, `pod` that names a service or pod the store knows;
the entry trace is chosen label-free, as for stored cases (`evidence.start.case_starting_at`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from thinkfl.evidence.start import ALERT_LOOKBACK_S, case_starting_at
from thinkfl.telemetry import FailureCase, Level, TelemetryStore

SCOPE_LABELS = ("service", "service_name", "job", "app", "pod")
_ALERT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Alert(BaseModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    """The body Alertmanager's `webhook_configs` posts (version "4")."""

    version: Literal["4"]
    groupKey: str = ""
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(min_length=1)


def scope_of(alert: Alert, store: TelemetryStore) -> str | None:
    """The service an alert is about, from its labels (a pod label gives its service)."""
    entities = store.entities()
    for label in SCOPE_LABELS:
        value = alert.labels.get(label)
        entity = entities.get(value or "")
        if entity is None:
            continue
        if entity.level == Level.SERVICE:
            return entity.name
        if entity.level == Level.POD and entity.service:
            return entity.service
    return None


def case_of(alert: Alert, store: TelemetryStore) -> FailureCase:
    """The case a firing alert asks about (raises TelemetryError when no trace fits)."""
    service = scope_of(alert, store)
    case = case_starting_at(store, alert.startsAt, service, lookback_s=ALERT_LOOKBACK_S)
    name = alert.labels.get("alertname", "alert")
    key = alert.fingerprint or f"{alert.startsAt:%Y%m%d-%H%M%S}"
    return case.model_copy(update={"case_id": alert_case_id(name, key)})


def alert_case_id(name: str, key: str) -> str:
    """A case id from an alert's name and fingerprint: both come from outside, so only
    letters, digits and `._-` survive, each part bounded (never a path, always a valid id).

    >>> alert_case_id("x/../../../../outside", "ab12")
    'alert-x_outside-ab12'
    """
    parts = [_ALERT_ID_UNSAFE.sub("_", part).strip("._-")[:60] or "alert" for part in (name, key)]
    return f"alert-{parts[0]}-{parts[1]}"
