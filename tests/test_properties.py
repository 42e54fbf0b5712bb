"""Properties over varied inputs: pod naming, epoch units, lenient severity words."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from thinkfl.telemetry import service_of_pod
from thinkfl.telemetry.ingest.aiops2022 import epoch_to_datetime

SERVICE = st.from_regex(r"[a-z][a-z0-9]{1,12}(-[a-z][a-z0-9]{1,10}){0,3}", fullmatch=True)


@given(SERVICE, st.integers(0, 99))
def test_numbered_replicas_map_to_their_service(service, replica):
    assert service_of_pod(f"{service}-{replica}") == service


@given(
    SERVICE,
    st.from_regex(r"[0-9a-f]{8,10}", fullmatch=True),
    st.from_regex(r"[0-9a-z]{5}", fullmatch=True),
)
def test_deployment_pods_drop_hash_and_suffix(service, replicaset, suffix):
    assert service_of_pod(f"{service}-{replicaset}-{suffix}") == service


@given(st.integers(946_684_800, 4_102_444_800))  # 2000 .. 2100 in seconds
def test_epoch_units_are_told_apart_by_magnitude(seconds):
    expected = datetime.fromtimestamp(seconds, UTC)
    for scale in (1, 1_000, 1_000_000, 1_000_000_000):
        assert epoch_to_datetime(seconds * scale) == expected
