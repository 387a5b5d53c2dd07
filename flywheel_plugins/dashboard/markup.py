"""HTML building blocks: escaping, the page layout, number and time formats, and the inline SVG chart.

Every value that reaches a page goes through :func:`e` (``html.escape`` with quotes), so
job args, error messages and captured output can hold anything. There is no template
engine, no script and no external asset: one page is one self-contained HTML document.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flywheel_plugins.dashboard.queries import OUTCOMES, Count

NAV = (("/", "Overview"), ("/queues", "Queues"), ("/jobs", "Jobs"), ("/schedules", "Schedules"),
       ("/failures", "Failures"))
COLOURS = {"succeeded": "#2e7d32", "discarded": "#c62828", "cancelled": "#757575", "available": "#1565c0",
           "running": "#ef6c00", "retryable": "#ad1457", "scheduled": "#6a1b9a",
           # run outcomes
           "success": "#2e7d32", "error": "#c62828", "snooze": "#6a1b9a", "timeout": "#ad1457", "crashed": "#4e342e",
           "started": "#ef6c00"}

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}
header{background:#263238;color:#fff;padding:.5rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfd8dc;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .brand{font-weight:700;color:#fff;margin-right:1rem}header .mode{margin-left:auto;font-size:12px}
main{padding:1rem 1.5rem;max-width:1200px}
h1{font-size:20px;margin:.2rem 0 1rem}h2{font-size:16px;margin:1.2rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eceff1;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin-bottom:1rem}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:.6rem .9rem;min-width:8rem}
.card b{display:block;font-size:22px}.card span{color:#607d8b;font-size:12px}
.state{display:inline-block;padding:0 .4rem;border-radius:3px;color:#fff;font-size:12px}
pre{background:#fff;border:1px solid #e3e6ea;padding:.5rem;overflow:auto;max-height:20rem;margin:0;white-space:pre-wrap}
form.inline{display:inline}button{cursor:pointer;padding:.2rem .7rem}
.notice{background:#e8f5e9;border:1px solid #a5d6a7;padding:.5rem;margin-bottom:1rem}
.error{background:#ffebee;border:1px solid #ef9a9a;padding:.5rem;margin-bottom:1rem}
.filters{margin-bottom:.8rem}.filters select,.filters input{margin-right:.5rem}
.pager a{margin-right:1rem}.muted{color:#78909c}dl{display:grid;grid-template-columns:10rem 1fr;gap:.2rem .8rem}
dt{color:#607d8b}dd{margin:0}td pre{min-width:22rem;max-height:8rem}
table.narrow{width:auto;min-width:28rem}time{white-space:nowrap}
td a[href^="/jobs/"]{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;white-space:nowrap}
"""


def e(value: Any) -> str:
    """``value`` as escaped HTML text ("" for None)."""
    return "" if value is None else html.escape(str(value), quote=True)


def href(path: str, **query: Any) -> str:
    """An escaped URL: ``path`` and the query parameters that are set."""
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return e(path + ("?" + urlencode(params) if params else ""))


def link(path: str, text: Any, **query: Any) -> str:
    return f'<a href="{href(path, **query)}">{e(text)}</a>'


def when(value: datetime | None) -> str:
    """An instant as ``YYYY-MM-DD HH:MM:SS`` UTC in a ``<time>`` element."""
    if value is None:
        return '<span class="muted">–</span>'
    return f'<time datetime="{e(value.isoformat())}">{e(value.strftime("%Y-%m-%d %H:%M:%S"))}</time>'


def duration(value: timedelta | float | None) -> str:
    """A short human duration: ``850 ms``, ``12.5 s``, ``3 min 4 s``, ``2 h 5 min``."""
    if value is None:
        return "–"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return _two_units(seconds, 60, "min", 1, "s")
    if seconds < 86400:
        return _two_units(seconds, 3600, "h", 60, "min")
    return _two_units(seconds, 86400, "d", 3600, "h")


def _two_units(seconds: float, size: int, unit: str, small_size: int, small: str) -> str:
    whole, rest = int(seconds // size), int(seconds % size // small_size)
    return f"{whole} {unit}" + (f" {rest} {small}" if rest else "")


def count(value: Count | int) -> str:
    """A count with thousands separators; "≈" marks the planner's estimate."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value.value:,}" if value.exact else f'<span title="planner estimate">≈{value.value:,}</span>'


def state(name: str) -> str:
    return f'<span class="state" style="background:{COLOURS.get(name, "#455a64")}">{e(name)}</span>'


def as_json(value: Any) -> str:
    """A JSON value pretty-printed in a ``<pre>`` block."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return f"<pre>{e(text)}</pre>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, numeric: Iterable[int] = (),
          empty: str = "nothing here", narrow: bool = False) -> str:
    """A table whose cells are HTML already; columns in ``numeric`` are right-aligned."""
    right = set(numeric)
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in right else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="99" class="muted">{e(empty)}</td></tr>'
    return f"<table{' class=narrow' if narrow else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def post_button(action: str, label: str, csrf: str) -> str:
    """A one-button form that POSTs to ``action`` with the CSRF token (no script on any page)."""
    return (f'<form class="inline" method="post" action="{e(action)}">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<button type="submit">{e(label)}</button></form>')


def layout(title: str, body: str, *, active: str, mode: str, notice: str | None = None,
           error: str | None = None) -> str:
    """A whole page: header with navigation and the dashboard's mode, then ``body``."""
    nav = "".join(f'<a href="{path}"{" class=on" if path == active else ""}>{e(label)}</a>' for path, label in NAV)
    flash = (f'<div class="notice" role="status">{e(notice)}</div>' if notice else "") + (
        f'<div class="error" role="alert">{e(error)}</div>' if error else "")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{e(title)} · flywheel</title><style>{CSS}</style></head><body>"
            f'<header><span class="brand">flywheel</span>{nav}<span class="mode">{mode}</span></header>'
            f"<main><h1>{e(title)}</h1>{flash}{body}</main></body></html>")


def chart(series: list[tuple[datetime, dict[str, int]]], *, width: int = 720, height: int = 160) -> str:
    """Stacked bars of jobs finalised per minute by final state, as inline SVG (one ``<title>`` per bar)."""
    peak = max((sum(v.values()) for _, v in series), default=0) or 1
    slot = width / max(1, len(series))
    bar = max(1.0, slot - 2)
    plot = height - 20
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" aria-label="jobs finished per minute">'),
             f'<rect width="{width}" height="{plot}" fill="#fff" stroke="#e3e6ea"/>',
             f'<text x="4" y="12" font-size="11" fill="#607d8b">{peak:,}/min</text>']
    for i, (minute, values) in enumerate(series):
        x, y = i * slot + 1, float(plot)
        label = ", ".join(f"{k} {v:,}" for k, v in values.items()) or "none"
        parts.append(f"<g><title>{e(minute.strftime('%H:%M'))} UTC: {e(label)}</title>")
        for outcome in OUTCOMES:
            n = values.get(outcome, 0)
            if not n:
                continue
            h = n / peak * (plot - 16)
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS[outcome]}" class="bar-{outcome}"/>')
        parts.append("</g>")
    if series:
        for i in (0, len(series) // 2, len(series) - 1):
            anchor = "start" if i == 0 else "end" if i == len(series) - 1 else "middle"
            parts.append(f'<text x="{i * slot + slot / 2:.1f}" y="{height - 5}" font-size="11" fill="#607d8b" '
                         f'text-anchor="{anchor}">{e(series[i][0].strftime("%H:%M"))}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="state" style="background:{COLOURS[o]}">{o}</span>' for o in OUTCOMES)
    caption = '<span class="muted">jobs finished per minute, last hour (UTC)</span>'
    return "".join(parts) + f"<div>{legend} {caption}</div>"
