"""The metric tool: what deviates around a time for a component and what it covers, with
the evidence layer's saturation and shifts first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from thinkfl.evidence import EvidenceItem
from thinkfl.evidence.model import METRIC_KINDS
from thinkfl.telemetry import Entity
from thinkfl.tools.base import ComponentScore, EntityTool, Observation

if TYPE_CHECKING:
    from thinkfl.tools.toolbox import Toolbox


# A flat baseline still needs a real move: its spread is floored at this share of its level.
SPREAD_FLOOR = 0.05


class MetricFindings(BaseModel):
    evidence: list[EvidenceItem] = Field(default_factory=list)
    scores: list[ComponentScore] = Field(default_factory=list)
    fluctuating: list[tuple[str, str, float, str]] = Field(
        default_factory=list, description="(entity, metric, sigma, level), strongest first"
    )
    covered: list[tuple[str, str]] = Field(default_factory=list, description="(entity, level)")


class SearchFluctuatingMetrics(EntityTool):
    name = "search_fluctuating_metrics"
    description = (
        "Metrics of a service (its pods and their nodes), a pod or a node around a time: "
        "saturation and shifts against their normal first, then n-sigma deviations."
    )

    def look(self, box: Toolbox, entity: Entity, when: datetime) -> Observation:
        tool = self.name
        lim = box.limits
        names = box.covered(entity)
        rows = box.store.query(
            """SELECT entity, metric,
                   avg(value) FILTER (WHERE time < $3) AS mu,
                   coalesce(stddev_pop(value) FILTER (WHERE time < $3), 0) AS sd,
                   count(*) FILTER (WHERE time < $3) AS n_base,
                   avg(value) FILTER (WHERE time >= $4) AS cur,
                   max(value) FILTER (WHERE time >= $4) AS hi,
                   min(value) FILTER (WHERE time >= $4) AS lo
               FROM metrics WHERE entity IN (SELECT unnest($1)) AND time BETWEEN $2 AND $5
                 AND (time < $3 OR time >= $4)
               GROUP BY entity, metric""",
            [
                names,
                when - timedelta(seconds=lim.baseline_before_s),
                when - timedelta(seconds=lim.baseline_gap_s),
                when - timedelta(seconds=lim.current_before_s),
                when + timedelta(seconds=lim.current_after_s),
            ],
        ).to_pylist()
        found = []
        for row in rows:
            if row["cur"] is None or row["mu"] is None or row["n_base"] < 2:
                continue
            floor = 1e-9 + SPREAD_FLOOR * abs(row["mu"])
            sd = max(row["sd"], floor)
            peak = (
                row["hi"] if abs(row["hi"] - row["mu"]) >= abs(row["lo"] - row["mu"]) else row["lo"]
            )
            z = abs(peak - row["mu"]) / sd
            if z > lim.sigma:
                found.append((z, row | {"sd_used": sd, "floored": row["sd"] < floor, "peak": peak}))
        found.sort(key=lambda item: (-item[0], item[1]["entity"], item[1]["metric"]))
        block, scores, evidence_data = box.evidence_view(entity, METRIC_KINDS, "metric evidence")
        if not found:
            text = (
                f"no metric of {', '.join(names)} deviates beyond {lim.sigma:g} sigma "
                f"around {box.rel(when)}"
            )
            covered = [(name, box.level_of(name)) for name in names]
            return Observation(
                tool=tool,
                text=f"{block}\n{text}",
                data=MetricFindings(
                    fluctuating=[],
                    covered=covered,
                    evidence=evidence_data,
                    scores=scores,
                ).model_dump(),
            )
        width = max(len(r["entity"]) for _z, r in found)
        # each line can be checked by hand: sigma = |peak - normal| / spread
        floor_note = f" ({SPREAD_FLOOR:.0%} floor)"
        lines = [
            f"{r['entity']:<{width}}  {r['metric'][:34]:<34} normal {r['mu']:.3g} "
            f"±{r['sd_used']:.3g}{floor_note if r['floored'] else ''}, peak {r['peak']:.3g}: "
            f"{z:.1f} sigma"
            for z, r in found
        ]
        body, cut = box.cut(lines, len(lines), "fluctuating metrics")
        head = (
            f"{len(found)} fluctuating metrics of {entity.level.value} {entity.name} "
            f"around {box.rel(when)}, strongest first:"
        )
        return Observation(
            tool=tool,
            text=f"{block}\n{head}\n{body}",
            truncated=cut,
            data=MetricFindings(
                evidence=evidence_data,
                scores=scores,
                fluctuating=[
                    (r["entity"], r["metric"], round(z, 3), box.level_of(r["entity"]))
                    for z, r in found
                ],
                covered=[(name, box.level_of(name)) for name in names],
            ).model_dump(),
        )
