"""Hostile input and poison outcomes (issue 7, defects 3 and 10): rejected at enqueue, repaired at finalisation.

Args holding NUL or a lone surrogate, or nested absurdly deep, are one ``ValidationError(field="args")``
on every insert path and write nothing. A worker whose output or error holds the same characters
still has its real outcome stored, and the jobs after it run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest

import flywheel
from flywheel.storage.sanitize import MAX_ERROR_BYTES, MAX_JSON_DEPTH, MAX_OUTPUT_BYTES, REPLACEMENT
from tests.helpers import job_row, run_rows


@attrs.frozen
class Payload:
    kind: ClassVar[str] = "payload"
    data: Any = None


def nested(levels: int) -> Any:
    """A list nested ``levels`` deep: ``[[...[]...]]``."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


HOSTILE = {
    "nul": "before\x00after",
    "lone_surrogate": "before\ud800after",
    "nested_10000": nested(10_000),
}


def _insert_typed(client: flywheel.Client, value: Any) -> Any:
    return client.insert(Payload(data=value))


def _enqueue_json_text(client: flywheel.Client, value: Any) -> Any:
    if isinstance(value, list):  # written as text: json.dumps itself would hit the recursion limit
        text = '{"data": ' + "[" * 10_000 + "]" * 10_000 + "}"
    else:
        text = '{"data": ' + json.dumps(value) + "}"  # NUL and surrogates travel as \\u escapes
    return client.enqueue("payload", text)


def _enqueue_dict(client: flywheel.Client, value: Any) -> Any:
    return client.enqueue("payload", {"data": value})


def _insert_many(client: flywheel.Client, value: Any) -> Any:
    return client.insert_many([Payload(data=1), (Payload(data=value), flywheel.InsertOpts()), Payload(data=3)])


PATHS = {"insert": _insert_typed, "enqueue_json_text": _enqueue_json_text, "enqueue_dict": _enqueue_dict,
         "insert_many": _insert_many}


# -- defect 3 (b): hostile args at enqueue -------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_defect_3_hostile_args_are_one_validation_error_and_write_nothing(db, client, hostile, path):
    with pytest.raises(flywheel.ValidationError) as caught:
        PATHS[path](client, HOSTILE[hostile])
    assert caught.value.field == "args"
    assert "\n" not in str(caught.value)  # one clear line, not a driver's multi-line SQL error
    assert "\x00" not in str(caught.value) and "\ud800" not in str(caught.value)
    if hostile == "nested_10000":
        assert f"nested more than {MAX_JSON_DEPTH} levels" in caught.value.message
    else:
        assert ("NUL" if hostile == "nul" else "lone surrogate") in caught.value.message
    assert flywheel.count_active_jobs(db) == 0  # the batch's good items were not written either


def test_defect_3_hostile_keys_and_nested_strings_are_found_with_their_path(db, client):
    with pytest.raises(flywheel.ValidationError, match=r"at \$\.outer\[1\]") as caught:
        client.enqueue("payload", {"outer": ["fine", "bad\x00"]})
    assert caught.value.field == "args"
    with pytest.raises(flywheel.ValidationError, match="a key"):
        client.enqueue("payload", '{"k\\u0000": 1}')
    assert flywheel.count_active_jobs(db) == 0


def test_defect_3_the_nesting_limit_is_exact_and_allowed_args_round_trip(db, registry, client, make_runner):
    seen: list[Any] = []

    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> None:
        seen.append(job.args.data)

    deepest = nested(MAX_JSON_DEPTH - 1)  # inside the args object: MAX_JSON_DEPTH levels in all
    client.insert(Payload(data=deepest))
    client.enqueue("payload", {"data": deepest})
    for too_deep in (lambda: client.insert(Payload(data=[deepest])), lambda: client.enqueue("payload", {"data": [deepest]})):
        with pytest.raises(flywheel.ValidationError, match="nested more than") as caught:
            too_deep()
        assert caught.value.field == "args"
    # legitimate escapes are not mistaken for hostile ones
    client.enqueue("payload", {"data": "a literal \\u0000 and \\ud800, and 😀 é"})
    assert make_runner().run_until_idle(timeout=30) == 3
    assert seen[:2] == [deepest, deepest]
    assert seen[2] == "a literal \\u0000 and \\ud800, and 😀 é"


@pytest.mark.parametrize("field", ["queue", "unique_key", "unique_active_key", "executor_class", "request_id"])
def test_defect_3_hostile_text_options_are_a_validation_error_naming_them(db, client, field):
    with pytest.raises(flywheel.ValidationError) as caught:
        client.enqueue("payload", {}, **{field: "x\x00y"})
    assert caught.value.field == field
    with pytest.raises(flywheel.ValidationError) as caught:
        client.insert(Payload(), **{field: "x\udfffy"})
    assert caught.value.field == field
    with pytest.raises(flywheel.ValidationError) as caught:
        client.enqueue("pay\x00load", {})
    assert caught.value.field == "kind"
    assert flywheel.count_active_jobs(db) == 0


# -- defect 3 (a): poison outcomes are stored sanitised ------------------------------------------


@pytest.mark.timeout(120)
def test_defect_3_nul_and_lone_surrogate_in_output_persist_sanitised(db, registry, client, make_runner):
    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> flywheel.Result:
        if job.args.data == "poison":
            return flywheel.Result(output={"text": "a\x00b", "lone": "c\ud800d", "k\x00ey": ["e\udc00"], "ok": "😀"})
        return flywheel.Result(output={"n": job.args.data})

    poison = client.insert(Payload(data="poison"))
    after = [client.insert(Payload(data=n)) for n in range(3)]
    assert make_runner(lease=3).run_until_idle(timeout=60) == 4
    assert flywheel.find_job(db, poison).state == "succeeded"
    [run] = flywheel.list_runs(db, poison)
    assert run.outcome == "success"
    assert run.output == {"text": f"a{REPLACEMENT}b", "lone": f"c{REPLACEMENT}d", f"k{REPLACEMENT}ey": [f"e{REPLACEMENT}"],
                          "ok": "😀"}
    assert [flywheel.find_job(db, j).state for j in after] == ["succeeded"] * 3


@pytest.mark.timeout(120)
def test_defect_3_nul_in_an_error_message_persists_sanitised(db, registry, client, make_runner):
    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> None:
        if job.args.data == "poison":
            raise flywheel.Permanent("bad\x00byte and a lone \ud800 surrogate")

    poison = client.insert(Payload(data="poison"))
    after = [client.insert(Payload(data=n)) for n in range(3)]
    assert make_runner(lease=3).run_until_idle(timeout=60) == 4
    job = flywheel.find_job(db, poison)
    assert job.state == "discarded"  # the real outcome, not a sweep's "crashed"
    [run] = run_rows(db, poison)
    assert run["outcome"] == "error" and run["error_class"] == "permanent"
    assert run["error_message"] == f"Permanent: bad{REPLACEMENT}byte and a lone {REPLACEMENT} surrogate"
    [failure] = flywheel.recent_failures(db)
    assert failure.error_message == run["error_message"]
    assert [flywheel.find_job(db, j).state for j in after] == ["succeeded"] * 3


@pytest.mark.timeout(120)
def test_defect_3_oversized_output_and_error_are_bounded_with_a_visible_marker(db, registry, client, make_runner):
    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> flywheel.Result:
        if job.args.data == "big-error":
            raise flywheel.Permanent("é" * 10_000)
        return flywheel.Result(output={"blob": "x" * (MAX_OUTPUT_BYTES + 10)})

    big_output = client.insert(Payload(data="big-output"))
    big_error = client.insert(Payload(data="big-error"))
    make_runner().run_until_idle(timeout=60)
    [run] = flywheel.list_runs(db, big_output)
    assert run.outcome == "success"
    assert run.output["truncated"] is True and run.output["bytes"] > MAX_OUTPUT_BYTES
    assert run.output["preview"].startswith('{"blob":"xxx')
    [failed] = run_rows(db, big_error)
    assert failed["error_message"].endswith("…[truncated]")
    assert failed["error_message"].startswith("Permanent: ééé")
    assert len(failed["error_message"].encode()) <= MAX_ERROR_BYTES


@pytest.mark.timeout(120)
def test_defect_3_a_hostile_follow_up_fails_its_attempt_and_blocks_nothing(db, registry, client, make_runner):
    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> flywheel.Result | None:
        if job.args.data == "parent":
            return flywheel.Result(follow_ups=[flywheel.FollowUp("payload", {"data": "child\x00"})])
        return None

    parent = client.insert(Payload(data="parent"))
    after = client.insert(Payload(data="after"))
    make_runner(lease=3).run_until_idle(timeout=60)
    assert flywheel.find_job(db, parent).state == "discarded"
    [run] = run_rows(db, parent)
    assert run["error_class"] == "permanent" and "NUL" in run["error_message"]
    assert flywheel.find_job(db, after).state == "succeeded"
    assert flywheel.overview(db).total == 2  # no child was written


# -- defect 10: naive datetimes ------------------------------------------------------------------


NAIVE = datetime(2030, 1, 1, 12, 0)


def test_defect_10_a_naive_schedule_at_is_rejected_on_every_insert_path(db, client):
    attempts = [
        lambda: client.insert(Payload(), schedule_at=NAIVE),
        lambda: client.enqueue("payload", {}, schedule_at=NAIVE),
        lambda: client.insert_many([(Payload(), flywheel.InsertOpts(schedule_at=NAIVE))]),
        lambda: flywheel.InsertOpts(schedule_at=NAIVE),
    ]
    for attempt in attempts:
        with pytest.raises(flywheel.ValidationError) as caught:
            attempt()
        assert caught.value.field == "schedule_at"
        assert "timezone-aware" in caught.value.message
    assert flywheel.count_active_jobs(db) == 0
    aware = client.insert(Payload(), schedule_at=NAIVE.replace(tzinfo=UTC))
    assert job_row(db, aware)["scheduled_at"] == NAIVE.replace(tzinfo=UTC)


def test_defect_10_a_naive_follow_up_schedule_at_fails_the_attempt_and_enqueues_nothing(db, registry, client,
                                                                                         make_runner):
    @registry.worker("payload")
    def work(job: flywheel.Job[Payload]) -> flywheel.Result | None:
        if job.args.data == "parent":
            return flywheel.Result(follow_ups=[flywheel.FollowUp("payload", {}, schedule_at=NAIVE)])
        return None

    parent = client.insert(Payload(data="parent"))
    make_runner().run_until_idle(timeout=30)
    [run] = run_rows(db, parent)  # permanent: not retried only to fail the same way
    assert run["outcome"] == "error" and run["error_class"] == "permanent"
    assert "schedule_at must be timezone-aware" in run["error_message"]
    assert flywheel.find_job(db, parent).state == "discarded"
    assert flywheel.overview(db).total == 1


def test_defect_10_naive_instants_are_rejected_by_the_operations_and_the_clock(db, client):
    done = client.enqueue("payload", {})
    with pytest.raises(flywheel.ValidationError) as caught:
        flywheel.delete_finished_jobs(db, NAIVE)
    assert caught.value.field == "older_than"
    with pytest.raises(flywheel.ValidationError) as caught:
        flywheel.recent_failures(db, since=NAIVE)
    assert caught.value.field == "since"
    with pytest.raises(flywheel.ValidationError) as caught:
        flywheel.list_runs(db, done, before=NAIVE)
    assert caught.value.field == "before"
    for stand_still in (lambda: flywheel.FixedClock(NAIVE), lambda: flywheel.FixedClock(NAIVE.replace(tzinfo=UTC)).set(NAIVE)):
        with pytest.raises(flywheel.ValidationError) as caught:
            stand_still()
        assert caught.value.field == "at"
    later = datetime.now(UTC) + timedelta(days=1)
    assert flywheel.delete_finished_jobs(db, later) == 0
    assert flywheel.recent_failures(db, since=later) == []
    assert flywheel.list_runs(db, done, before=later) == []


def test_defect_3_hostile_schedule_args_are_a_validation_error(db):
    for args in ({"a": "x\x00"}, {"a": "x\ud800"}, {"a": nested(MAX_JSON_DEPTH + 1)}):
        with pytest.raises(flywheel.ValidationError) as caught:
            flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="s", kind="k", every=timedelta(minutes=1), args=args))
        assert caught.value.field == "args"
    assert flywheel.list_periodics(db) == []


def test_defect_3_sanitising_changes_only_what_cannot_be_stored():
    from flywheel.storage.sanitize import bound_text, clean_error, clean_output

    for fine in ('{"a":"a literal \\\\u0000 stays"}', '{"emoji":"\\ud83d\\ude00"}', '[1,2.5,null,true]'):
        assert clean_output(fine) == fine
    assert json.loads(clean_output('{"a\\u0000":"\\udc00x"}')) == {f"a{REPLACEMENT}": f"{REPLACEMENT}x"}
    assert clean_error("plain") == "plain" and clean_error(None) is None
    cut = bound_text("é" * 3000, 4096)
    assert cut.endswith("…[truncated]") and len(cut.encode()) <= 4096 and cut.startswith("é" * 2000)
    assert bound_text("é" * 2048, 4096) == "é" * 2048  # exactly at the bound: untouched


@pytest.mark.parametrize("job_id", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("operation", ["find_job", "list_runs", "cancel_job", "retry_job"])
def test_an_unstorable_job_id_is_a_validation_error_naming_it(db, client, operation, job_id):
    """An id no job can have (the dashboard's URL or a script passed it) is refused by name on both dialects,
    not left to the database adapter's own ValueError or UnicodeEncodeError."""
    live = client.enqueue("hostile", {})
    with pytest.raises(flywheel.ValidationError) as raised:
        getattr(flywheel, operation)(db, job_id)
    assert raised.value.field == "job_id"
    assert flywheel.find_job(db, live).state == "available"
