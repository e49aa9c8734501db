"""The published table as JSON and as CSV: the asked dimensions' codes (`none` as null, or an
empty CSV field), each measure's figure (a number, or "< 10" where suppressed) and the measures
whose figure is partial (withheld cells left out). Aggregates only: no resource id, no
reference, nothing about a person."""

from __future__ import annotations

import csv
import io
from typing import Any

from server.stats import tags
from server.stats.figures import MEASURES, Figure, Table


def as_json(table: Table) -> dict[str, Any]:
    inquiry = table.inquiry
    report: dict[str, Any] = {
        "from": inquiry.first.isoformat(),
        "to": inquiry.last.isoformat(),
        "group-by": list(inquiry.group_by),
        "threshold": table.threshold,
        "measures": list(MEASURES),
    }
    if inquiry.where:
        report["where"] = dict(inquiry.where)
    report["groups"] = [
        {
            **{name: _code(code) for name, code in zip(inquiry.group_by, codes, strict=True)},
            **_figures(table, figures),
        }
        for codes, figures in table.ordered()
    ]
    report["total"] = _figures(table, table.total())
    return report


def as_csv(table: Table) -> str:
    """One line per group under a header line; the total is the JSON's only (it is the sum of
    the lines' shown cells)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*table.inquiry.group_by, *MEASURES, "partial"])
    for codes, figures in table.ordered():
        row = _figures(table, figures)
        writer.writerow(
            [
                *(_code(code) or "" for code in codes),
                *(row[m] for m in MEASURES),
                " ".join(row.get("partial", [])),
            ]
        )
    return out.getvalue()


def _figures(table: Table, figures: dict[str, Figure]) -> dict[str, Any]:
    shown: dict[str, Any] = {m: table.value(m, figures.get(m, Figure())) for m in MEASURES}
    partial = table.partial(figures)
    return {**shown, "partial": partial} if partial else shown


def _code(code: str) -> str | None:
    return None if code == tags.NONE else code
