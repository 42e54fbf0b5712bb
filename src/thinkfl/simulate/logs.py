"""The normal log mix of a simulated service: templated lines from code locations.

Real services log a steady mix of INFO lines per request (arrival, work, completion,
housekeeping), an occasional WARN and a rare ERROR, each from a fixed place in the code and
with ids and numbers inside. Faults change that mix the way real ones do: an exception makes
the lines after the throwing point vanish, a wrong result makes a rare ERROR line frequent.
Three quarters of the services start each message with a code location (Java
`CartService.java:57`, Go `cart_handler.go:88` or Python `cart_service.py:120`, chosen by a
hash of the name), the rest log plain messages, so that both ways of grouping lines (by
location, by mined template) are exercised.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from enum import StrEnum

EXCEPTION_LOG = "java.lang.NullPointerException at handler.process(Handler.java:118)"
WRONG_RESULT_LOG = "computed result failed validation; returning default"


class LogRole(StrEnum):
    ARRIVAL = "arrival"
    WORK = "work"
    COMPLETION = "completion"  # written after the work: vanishes when the work throws
    HOUSEKEEPING = "housekeeping"
    RETRY = "retry"
    RARE_ERROR = "rare_error"


@dataclass(frozen=True)
class LogLine:
    role: LogRole
    severity: str
    template: str  # str.format fields: {id}, {n}, {noun}, {op}
    rate: float  # probability per request the service serves
    line: int  # the line number of its code location


MIX: tuple[LogLine, ...] = (
    LogLine(LogRole.ARRIVAL, "info", "received {op} request id={id}", 0.9, 41),
    LogLine(LogRole.WORK, "info", "{noun} {id} loaded in {n} ms", 0.6, 57),
    LogLine(LogRole.COMPLETION, "info", "{op} done for request {id}: status=OK", 0.6, 88),
    LogLine(LogRole.HOUSEKEEPING, "info", "refreshed {noun} cache: {n} entries", 0.15, 120),
    LogLine(LogRole.RETRY, "warn", "retrying {noun} lookup for {id} after {n} ms", 0.01, 133),
    LogLine(LogRole.RARE_ERROR, "error", WRONG_RESULT_LOG + " for {id}", 0.002, 151),
)


def _style(service: str) -> int:
    return zlib.crc32(service.encode()) % 4


def location(service: str, line: int) -> str | None:
    """The code location a service's messages start with, or None for plain messages."""
    stem = "".join(ch for ch in service.split("-")[0] if ch.isalnum()) or "svc"
    style = _style(service)
    if style == 0:
        return f"{stem.capitalize()}Service.java:{line}"
    if style == 1:
        return f"{stem}_handler.go:{line}"
    if style == 2:
        return f"{stem}_service.py:{line}"
    return None


def render(service: str, operation: str, entry: LogLine, rng: random.Random) -> str:
    body = entry.template.format(
        id=f"{rng.getrandbits(48):012x}",
        n=rng.randint(1, 500),
        noun=service.split("-")[0].removeprefix("ts").strip("_") or "item",
        op=operation.rsplit("/", 1)[-1] or operation,
    )
    where = location(service, entry.line)
    return f"{where} {body}" if where else body
