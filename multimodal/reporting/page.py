"""The HTML page of the run report: sections, tables, inline CSS, nothing fetched from elsewhere.

Text is escaped with :func:`html.escape` where it enters the page; tables come from DataFrames
(``to_html`` escapes their cells). The page holds no script that runs: the claimed TRIPOD+AI
items are embedded as a JSON data block (``<script type="application/json">``) for tools.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multimodal.reporting.tripod import TRIPOD_ITEMS, items_of_section

__all__ = ["Section", "bullets", "ci", "fmt", "page", "para", "table"]

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       margin: 0; color: #1d2733; background: #f6f7f9; line-height: 1.45; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #dfe3e8; padding-bottom: 4px; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
section { margin-bottom: 1.2em; }
.tripod { font-size: 0.75em; color: #5b6b7b; font-weight: normal; margin-left: 0.6em; }
.key { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.key div { background: #eef3f8; border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.key b { display: block; font-size: 1.25em; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.88em; }
th, td { border: 1px solid #dfe3e8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { background: #fff1e6; }
img { max-width: 100%; height: auto; border: 1px solid #eef0f2; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 0.8em; }
.note { color: #5b6b7b; font-size: 0.9em; }
.warn { background: #fff6e0; border-left: 4px solid #f0a30a; padding: 6px 10px; }
nav ul { columns: 2; font-size: 0.9em; list-style: none; padding-left: 0; }
nav li { margin-bottom: 2px; }
details summary { cursor: pointer; color: #2c5d8a; }
"""


@dataclass
class Section:
    """One section of the report; ``key`` is its id and decides its TRIPOD+AI items."""

    key: str
    title: str
    body: str
    level: int = 2

    @property
    def items(self) -> list[str]:
        return items_of_section(self.key)

    def render(self) -> str:
        items = " ".join(self.items)
        label = f'<span class="tripod">TRIPOD+AI {html.escape(", ".join(self.items))}</span>'
        return (
            f'<section id="{html.escape(self.key)}" data-tripod="{html.escape(items)}">\n'
            f"<h{self.level}>{html.escape(self.title)}{label if items else ''}</h{self.level}>\n"
            f"{self.body}\n</section>"
        )


def fmt(x: Any, digits: int = 3) -> str:
    """A number for the page: ``digits`` significant decimals, ``–`` for missing values."""
    if x is None:
        return "–"
    if isinstance(x, (bool, str)):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{v:.{digits}f}"


def ci(low: Any, high: Any, digits: int = 3) -> str:
    """``0.712–0.801`` (kept on one line), or ``–`` when the interval is unknown."""
    a, b = fmt(low, digits), fmt(high, digits)
    if a == "–" and b == "–":
        return "–"
    return f"{a}\u2060–\u2060{b}"  # word joiners: no line break inside the interval


def para(text: str, cls: str | None = None) -> str:
    """An escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def bullets(lines: Iterable[str]) -> str:
    """An escaped bullet list."""
    return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"


def table(frame: pd.DataFrame, digits: int | dict[str, int] = 3, flag: str | None = None) -> str:
    """``frame`` as an HTML table (cells escaped); numbers right-aligned with ``digits`` decimals
    (an int, or column -> decimals with 3 for the others); rows where the bool column ``flag`` is
    true highlighted (the column itself is not shown)."""
    if frame is None or not len(frame):
        return para("(no rows)", "note")
    shown = frame.drop(columns=[flag]) if flag else frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    places = [digits.get(str(c), 3) if isinstance(digits, dict) else digits for c in shown.columns]
    for i, row in enumerate(shown.itertuples(index=False)):
        cls = ' class="flag"' if flag and bool(frame[flag].iloc[i]) else ""
        cells = []
        for v, d in zip(row, places):
            number = isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
            cell = fmt(v, d) if number else html.escape("–" if v is None else str(v))
            cells.append(f'<td class="num">{cell}</td>' if number else f"<td>{cell}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _checklist(sections: list[Section]) -> str:
    present = {s.key for s in sections}
    rows = []
    for item in TRIPOD_ITEMS:
        links = ", ".join(
            f'<a href="#{html.escape(k)}">{html.escape(k)}</a>'
            for k in item.sections
            if k in present
        )
        rows.append(f"<li><b>{html.escape(item.item)}</b> {html.escape(item.title)} — {links}</li>")
    return (
        '<nav aria-label="TRIPOD+AI items"><h3>TRIPOD+AI items this report covers</h3>'
        f"<ul>{''.join(rows)}</ul></nav>"
    )


def page(title: str, sections: list[Section]) -> str:
    """The whole self-contained HTML document."""
    claimed = [
        {"item": t.item, "title": t.title, "sections": list(t.sections)} for t in TRIPOD_ITEMS
    ]
    data = json.dumps(claimed, ensure_ascii=True).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'  # no favicon request
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="application/json" id="tripod-items">{data}</script>\n'
        f"</head>\n<body>\n<main>\n{sections[0].render() if sections else ''}\n"
        f"{_checklist(sections)}\n{chr(10).join(s.render() for s in sections[1:])}\n"
        "</main>\n</body>\n</html>\n"
    )
