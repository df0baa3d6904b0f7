"""The report as data: JSON (every figure, versioned) and CSV (one file per table).

The JSON holds every field of :class:`~uptake.collector.metrics.Report`, nested as it is,
plus the settings the report used and the figures the page derives from it (each nudge's
lift interval); :func:`from_data` reads it back into an equal ``Report``. Both are
generic over the ``Report`` type: a field added to it (a new table of attrs objects, a
new scalar) is exported, documented in docs/report.md, and read back with no change
here. The schema is described in docs/report.md#json-and-csv; ``schema_version`` changes
when a field is renamed or removed or changes meaning (adding one does not).
"""

from __future__ import annotations

import csv
import json
import math
import os
import types
from collections.abc import Mapping
from datetime import date
from typing import Any, Union, get_args, get_origin, get_type_hints

import attrs

from .lift import ALPHA, MIN_PER_ARM, TARGET
from .metrics import NudgeStat, Report
from .settings import ReportSettings
from .wording import LIFT_CONFIDENCE, lift_interval

__all__ = ["SCHEMA", "SCHEMA_VERSION", "from_data", "to_data", "to_json", "write_csv"]

SCHEMA = "uptake.report"
SCHEMA_VERSION = 1


def _plain(value: Any) -> Any:
    if attrs.has(type(value)):
        out = {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
        if isinstance(value, NudgeStat):
            interval = lift_interval(value)
            out["lift_ci_low"] = None if interval is None else interval[0]
            out["lift_ci_high"] = None if interval is None else interval[1]
        return out
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_data(report: Report, settings: ReportSettings | None = None) -> dict[str, Any]:
    """Return the report as plain data (JSON types only), with its schema and settings."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "lift_confidence": LIFT_CONFIDENCE,
        # How the lift by assignment's anytime-valid interval is drawn (docs/nudges.md).
        "lift_sequence": {
            "method": "normal-mixture confidence sequence",
            "alpha": ALPHA,
            "tightest_at_users": TARGET,
            "min_users_per_arm": MIN_PER_ARM,
            "cuped_covariate": "active days in the 28 days before assignment",
        },
        "settings": None if settings is None else settings.to_dict(),
        "report": _plain(report),
    }


def to_json(report: Report, settings: ReportSettings | None = None) -> str:
    """Return the report as a JSON document (see :func:`to_data`)."""
    return json.dumps(to_data(report, settings), indent=1, ensure_ascii=False, allow_nan=False)


def _build(kind: Any, value: Any) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = get_origin(kind), get_args(kind)
    if kind is date:
        return date.fromisoformat(value)
    if origin in (dict, Mapping) and len(args) == 2:
        return {k: _build(args[1], v) for k, v in value.items()}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value, strict=True))
    if isinstance(kind, type) and attrs.has(kind):
        hints = get_type_hints(kind)
        fields = {
            f.name: _build(hints[f.name], value[f.name])
            for f in attrs.fields(kind)
            if f.name in value or f.default is attrs.NOTHING
        }
        return kind(**fields)
    return value


def from_data(data: Mapping[str, Any]) -> Report:
    """Read back what :func:`to_data` wrote: an equal :class:`Report`.

    Raises:
        ValueError: not an uptake report, or a schema version this uptake cannot read.
    """
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not an {SCHEMA} document")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{SCHEMA} schema version {data.get('schema_version')!r}; this uptake reads "
            f"version {SCHEMA_VERSION}"
        )
    report: Report = _build(Report, data["report"])
    return report


#: Column names of the CSV files of histograms (a tuple of counts, index k = 1..n).
_SERIES = {"l7": ("active_days", "users"), "l28": ("active_days", "users")}


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def write_csv(
    report: Report, folder: str | os.PathLike[str], settings: ReportSettings | None = None
) -> list[str]:
    """Write the report as CSV files in ``folder`` (created if needed); return their paths.

    ``report.csv`` holds the single figures (and the settings, as ``settings.KEY``), one
    per row; every table of the report gets its own file named after its field
    (``daily.csv``, ``nudges.csv``, ...), one row per item, one column per figure.
    """
    os.makedirs(folder, exist_ok=True)
    data = to_data(report, settings)
    written: list[str] = []

    def write(name: str, header: list[str], rows: list[list[Any]]) -> None:
        path = os.path.join(folder, f"{name}.csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(header)
            out.writerows([[_cell(c) for c in row] for row in rows])
        written.append(path)

    scalars: list[list[Any]] = [["schema_version", SCHEMA_VERSION]]
    for key, value in (data["settings"] or {}).items():
        plain = value is None or isinstance(value, (str, int, float))
        scalars.append([f"settings.{key}", value if plain else json.dumps(value)])
    for name, value in data["report"].items():
        if not isinstance(value, list):
            scalars.append([name, value])
        elif name == "skipped_by":
            write(name, ["reason", "events"], [list(pair) for pair in value])
        elif value and isinstance(value[0], dict):
            header = list(value[0])
            write(name, header, [[row[k] for k in header] for row in value])
        elif value == [] and _is_table(name):
            write(name, _columns(name), [])
        else:
            first, second = _SERIES.get(name, ("index", "value"))
            write(name, [first, second], [[i + 1, v] for i, v in enumerate(value)])
    write("report", ["figure", "value"], scalars)
    return written


def _is_table(name: str) -> bool:
    kind = get_type_hints(Report)[name]
    args = get_args(kind)
    return bool(args) and isinstance(args[0], type) and attrs.has(args[0])


def _columns(name: str) -> list[str]:
    row_type = get_args(get_type_hints(Report)[name])[0]
    columns = [f.name for f in attrs.fields(row_type)]
    if row_type is NudgeStat:
        columns += ["lift_ci_low", "lift_ci_high"]
    return columns
