"""Ingest adapters: one per source format, all writing the canonical store.

`ingest(format, src, out)` is the one entry point: it loads the source through the format's
adapter into a temporary store, builds the failure cases, and renames the store into place.
Any error leaves no store behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from thinkfl.telemetry.cases import CaseRules, seal
from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.aiops2022 import Aiops2022Adapter
from thinkfl.telemetry.ingest.base import Adapter, IngestContext
from thinkfl.telemetry.ingest.csvread import BadRowBudget
from thinkfl.telemetry.ingest.nezha import NezhaAdapter
from thinkfl.telemetry.ingest.otlp import OtlpAdapter
from thinkfl.telemetry.model import Manifest, RejectedRows
from thinkfl.telemetry.store import StoreWriter

ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter for adapter in (NezhaAdapter(), Aiops2022Adapter(), OtlpAdapter())
}


class IngestResult(BaseModel):
    store: Path
    counts: dict[str, int]
    cases: int
    faults_without_traffic: list[str]
    skipped_rows: list[str]
    rejected_rows: list[RejectedRows] = []
    skipped_files: list[str] = []
    notes: list[str] = []
    recovered: list[str] = []


INVALID_ROW_POLICIES = ("skip", "fail")


def ingest(
    source_format: str,
    src: Path | str,
    out: Path | str,
    *,
    overwrite: bool = False,
    rules: CaseRules | None = None,
    max_bad_rows: int = 100,
    invalid_rows: str = "skip",
    on_plan: Callable[[int], None] = lambda _total: None,
    on_file: Callable[[str], None] = lambda _name: None,
) -> IngestResult:
    """Load `src` in `source_format` into a new store at `out` (atomically).

    `invalid_rows`: "skip" leaves rows with impossible values out and lists them in the
    manifest; "fail" refuses the ingest at the first such kind of row.
    """
    if invalid_rows not in INVALID_ROW_POLICIES:
        raise IngestError(
            invalid_rows,
            "--invalid-rows",
            "unknown policy",
            f"use {' or '.join(INVALID_ROW_POLICIES)}",
        )
    adapter = ADAPTERS.get(source_format)
    if adapter is None:
        raise IngestError(
            source_format, "format", "unknown format", f"use one of {', '.join(ADAPTERS)}"
        )
    src = Path(src)
    files = adapter.files(src)
    on_plan(len(files))
    budget = BadRowBudget(limit=max_bad_rows)
    with StoreWriter(Path(out), overwrite=overwrite) as writer:
        context = IngestContext(writer=writer, budget=budget, advance=on_file)
        adapter.load(src, context)

        def refuse_invalid(checked: StoreWriter) -> None:
            if invalid_rows == "fail" and checked.rejected:
                first = checked.rejected[0]
                example = first.examples[0] if first.examples else "-"
                raise IngestError(
                    src,
                    f"{first.table} rows",
                    f"{first.count} row(s) with {first.reason}, e.g. {example}",
                    "repair the export, or pass --invalid-rows skip to leave such rows out "
                    "(listed in the manifest)",
                )

        manifest, extraction = seal(
            writer,
            Manifest(
                source_format=source_format,
                source=str(src.resolve()),
                skipped_rows=budget.skipped,
                skipped_files=context.skipped_files,
                notes=context.notes,
            ),
            rules,
            check=refuse_invalid,
        )
    return IngestResult(
        store=Path(out),
        counts=manifest.counts,
        cases=len(extraction.cases),
        faults_without_traffic=extraction.faults_without_traffic,
        skipped_rows=budget.skipped,
        rejected_rows=writer.rejected,
        skipped_files=context.skipped_files,
        notes=context.notes,
        recovered=writer.recovered,
    )


__all__ = ["ADAPTERS", "INVALID_ROW_POLICIES", "IngestResult", "ingest"]
