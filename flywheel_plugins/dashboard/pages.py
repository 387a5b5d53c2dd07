"""The dashboard's pages: each a function from the database and the request's view to an HTML body.

Reads go through the kernel's inspection functions where they stay fast on a big table
(``find_job``, ``list_runs``, ``recent_failures``, ``list_periodics``) and through
:mod:`flywheel_plugins.dashboard.queries` where they would not (counts, pages of jobs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

import flywheel
from flywheel.enums import ACTIVE_STATES, JobState
from flywheel_plugins.dashboard import markup as m
from flywheel_plugins.dashboard.queries import OUTCOMES, PortableQueries

if TYPE_CHECKING:
    from flywheel.storage.db import Database

PAGE_SIZE = 50
_ACTIVE = {s.value for s in ACTIVE_STATES}


@attrs.frozen(kw_only=True)
class View:
    """What a page needs to know about the request: its query, its CSRF token, whether actions are allowed."""

    query: Mapping[str, str]
    csrf: str
    actions: bool

    def arg(self, name: str) -> str | None:
        value = self.query.get(name, "").strip()
        return value or None


def overview(db: Database, q: PortableQueries, view: View) -> tuple[str, str]:
    snap = q.snapshot()
    cards = [("ready now", m.count(snap.ready)), ("in flight", m.count(snap.inflight)),
             ("lag (oldest ready)", m.duration(snap.lag))]
    cards += [(name, f'<a href="{m.href("/jobs", state=name)}">{m.count(c)}</a>') for name, c in snap.states.items()]
    last = snap.throughput[-1][1] if snap.throughput else {}
    hour = {o: sum(v.get(o, 0) for _, v in snap.throughput) for o in OUTCOMES}
    body = ('<div class="cards">' + "".join(f'<div class="card"><b>{value}</b><span>{m.e(label)}</span></div>'
                                           for label, value in cards) + "</div>")
    body += "<h2>Throughput</h2>" + m.chart(snap.throughput)
    body += m.table(["outcome", "last minute", "last hour"],
                    [[m.state(o), m.count(last.get(o, 0)), m.count(hour[o])] for o in OUTCOMES],
                    numeric=(1, 2), narrow=True)
    body += f'<p class="muted">sampled {m.when(snap.sampled_at)} UTC; ≈ marks a planner estimate</p>'
    return "Overview", body


def queues(db: Database, q: PortableQueries, view: View) -> tuple[str, str]:
    rows = [[m.link("/jobs", r.queue, queue=r.queue), m.count(r.ready), m.count(r.running),
             m.count(r.scheduled_ahead), m.duration(r.lag)] for r in q.queues()]
    body = m.table(["queue", "ready", "running", "scheduled ahead", "lag"], rows, numeric=(1, 2, 3, 4),
                   empty="no queue has work waiting or running", narrow=True)
    body += '<p class="muted">Queues with jobs waiting or running. Lag is the age of the oldest ready job.</p>'
    return "Queues", body


def jobs(db: Database, q: PortableQueries, view: View) -> tuple[str, str]:
    state, kind, queue = view.arg("state"), view.arg("kind"), view.arg("queue")
    if state is not None and state not in {s.value for s in JobState}:
        raise ValueError(f"unknown state {state!r}; one of {', '.join(s.value for s in JobState)}")
    page = q.jobs(state=state, kind=kind, queue=queue, before=view.arg("before"), after=view.arg("after"),
                  limit=PAGE_SIZE)
    kinds, queue_names = q.kinds_and_queues()
    body = _filters(state, kind, queue, kinds, queue_names)
    rows = [[m.link(f"/jobs/{r.id}", r.id), m.e(r.kind), m.e(r.queue), m.state(r.state),
             f"{r.attempt}/{r.max_attempts}", str(r.priority), m.when(r.created_at),
             m.when(r.finalized_at or r.scheduled_at)] for r in page.rows]
    body += m.table(["id", "kind", "queue", "state", "attempt", "priority", "enqueued", "scheduled / finished"],
                    rows, numeric=(4, 5), empty="no job matches")
    if page.searched:
        body += (f'<p class="muted">Only the next {page.searched:,} jobs were searched for this queue; '
                 f"follow the link to search further.</p>")
    pager = []
    filters = {"state": state, "kind": kind, "queue": queue}
    if page.newer:
        pager.append(m.link("/jobs", "← newer", after=page.newer, **filters))
        pager.append(m.link("/jobs", "newest", **filters))
    if page.older:
        pager.append(m.link("/jobs", "search older →" if page.searched else "older →", before=page.older,
                            **filters))
    body += f'<div class="pager">{"".join(pager)}</div>'
    return "Jobs", body


def _filters(state: str | None, kind: str | None, queue: str | None, kinds: list[str], queues: list[str]) -> str:
    def select(name: str, current: str | None, options: list[str]) -> str:
        opts = [f'<option value="">any {name}</option>'] + [
            f'<option value="{m.e(o)}"{" selected" if o == current else ""}>{m.e(o)}</option>' for o in options]
        return f'<select name="{name}" aria-label="{name}">{"".join(opts)}</select>'

    states = [s.value for s in JobState]
    kind_input = f'<input name="kind" placeholder="kind" list="kinds" value="{m.e(kind or "")}" aria-label="kind">'
    datalist = '<datalist id="kinds">' + "".join(f'<option value="{m.e(k)}">' for k in kinds) + "</datalist>"
    return (f'<form class="filters" method="get" action="/jobs">{select("state", state, states)}{kind_input}'
            f'{datalist}{select("queue", queue, sorted(set(queues) | ({queue} if queue else set())))}'
            f'<button type="submit">Filter</button></form>')


def job(db: Database, q: PortableQueries, view: View, job_id: str) -> tuple[str, str]:
    found = flywheel.find_job(db, job_id)
    runs = flywheel.list_runs(db, job_id)
    actions = ""
    if view.actions:
        actions = m.post_button(f"/jobs/{job_id}/retry", "Retry", view.csrf)
        if found.state in _ACTIVE:
            actions += " " + m.post_button(f"/jobs/{job_id}/cancel", "Cancel", view.csrf)
    facts = [("state", m.state(found.state)), ("kind", m.e(found.kind)),
             ("queue", m.link("/jobs", found.queue, queue=found.queue)),
             ("attempt", f"{found.attempt} of {found.max_attempts}"), ("priority", m.e(found.priority)),
             ("enqueued", m.when(found.enqueued_at)), ("scheduled", m.when(found.scheduled_at)),
             ("finalized", m.when(found.finalized_at)), ("executor class", m.e(found.executor_class or "any")),
             ("parent", m.link(f"/jobs/{found.parent_job_id}", found.parent_job_id) if found.parent_job_id else "–"),
             ("unique key", m.e(found.unique_key or "–")), ("request id", m.e(found.request_id or "–")),
             ("tags", m.e(", ".join(found.tags) or "–"))]
    body = f"<p>{actions}</p>" if actions else ""
    body += "<dl>" + "".join(f"<dt>{m.e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    body += "<h2>Args</h2>" + m.as_json(found.args)
    metadata = db.Job.select(db.Job.metadata).where(db.Job.id == job_id).scalar()
    body += "<h2>Metadata</h2>" + m.as_json(metadata or {})
    rows = [[str(r.attempt), m.state(r.outcome), m.when(r.started_at), m.duration(
        None if r.duration_ms is None else r.duration_ms / 1000), m.e(r.error_class or ""),
        f"<pre>{m.e(r.error)}</pre>" if r.error else "",
        m.as_json(r.output) if r.output is not None else "", m.e(r.executor_id)] for r in runs]
    body += f"<h2>Runs ({len(runs)})</h2>" + m.table(
        ["attempt", "outcome", "started", "duration", "error class", "error", "output", "executor"], rows,
        numeric=(0,), empty="not run yet")
    return f"Job {job_id}", body


def schedules(db: Database, q: PortableQueries, view: View) -> tuple[str, str]:
    rows = []
    for s in flywheel.list_periodics(db):
        cadence = f"cron {s.cron}" if s.cron else f"every {m.duration(s.interval_seconds)}"
        toggle = ""
        if view.actions:
            verb = "disable" if s.active else "enable"
            toggle = m.post_button(f"/schedules/{s.slug}/{verb}", verb.capitalize(), view.csrf)
        rows.append([m.e(s.slug), m.e(s.kind), m.e(s.queue), m.e(cadence), m.e(s.timezone),
                     m.when(s.next_run_at if s.active else None), m.when(s.last_enqueued_at),
                     "active" if s.active else '<span class="muted">disabled</span>', toggle])
    body = m.table(["slug", "kind", "queue", "cadence", "zone", "next run", "last run", "status", ""], rows,
                   empty="no schedules")
    return "Schedules", body


def failures(db: Database, q: PortableQueries, view: View) -> tuple[str, str]:
    rows = [[m.link(f"/jobs/{f.job_id}", f.job_id), m.e(f.kind), m.e(f.queue), str(f.attempt),
             m.when(f.finalized_at), m.e(f.error_class), f"<pre>{m.e(f.error_message)}</pre>"]
            for f in flywheel.recent_failures(db, limit=50)]
    body = m.table(["job", "kind", "queue", "attempts", "discarded", "error class", "last error"], rows,
                   numeric=(3,), empty="no discarded jobs")
    return "Recent failures", body
