"""Small pieces of the report page's HTML, shared by its sections."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

__all__ = ["chart_div", "table"]


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> str:
    """Return a table of escaped cells, with ``cls`` as its class."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def chart_div(chart_id: str) -> str:
    """Return the placeholder a chart is drawn into."""
    return f'<div class="chart" id="chart-{chart_id}"></div>'
