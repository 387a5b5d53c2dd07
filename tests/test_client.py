"""The producer: inserts, unique keys, the outbox, bulk inserts and bad input."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import attrs
import pytest

import flywheel
from tests.helpers import job_row


@attrs.frozen
class Email:
    kind: ClassVar[str] = "email"
    to: str


@dataclasses.dataclass
class Resize:
    kind: ClassVar[str] = "resize"
    width: int


def test_insert_writes_a_complete_available_row(db, client, clock):
    with flywheel.request_id_scope("req-42"):
        job_id = client.insert(Email(to="a@example.com"), queue="mail", priority=-5, max_attempts=3,
                               tags=["welcome", "vip"], timeout=timedelta(seconds=2.5), executor_class="gpu")
    row = job_row(db, job_id)
    assert row["kind"] == "email" and row["args"] == {"to": "a@example.com"}
    assert (row["queue"], row["priority"], row["max_attempts"], row["attempt"]) == ("mail", -5, 3, 0)
    assert row["state"] == "available" and row["scheduled_at"] == clock.now() == row["created_at"]
    assert row["tags"] == ["welcome", "vip"] and row["metadata"] == {"request_id": "req-42"}
    assert row["timeout_ms"] == 2500 and row["executor_class"] == "gpu"
    assert flywheel.find_job(db, job_id).request_id == "req-42"


def test_defaults_a_dataclass_and_enqueue(db, client):
    job_id = client.insert(Resize(width=300))
    row = job_row(db, job_id)
    assert (row["kind"], row["queue"], row["priority"], row["max_attempts"]) == ("resize", "default", 100, 25)
    raw = client.enqueue("report", '{"month": "2026-11"}', schedule_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert job_row(db, raw)["args"] == {"month": "2026-11"}
    assert job_row(db, raw)["scheduled_at"] == datetime(2030, 1, 1, tzinfo=UTC)


def test_worker_defaults_apply_and_explicit_options_win(db, registry):
    class Mailer(flywheel.Worker[Email]):
        kind = "email"

        def work(self, job):
            return None

        def defaults(self):
            return flywheel.InsertOpts(queue="mail", priority=7, max_attempts=4)

    registry.register(Mailer())
    client = flywheel.Client(db, registry=registry)
    first = job_row(db, client.insert(Email(to="x")))
    assert (first["queue"], first["priority"], first["max_attempts"]) == ("mail", 7, 4)
    second = job_row(db, client.insert(Email(to="y"), priority=1))
    assert (second["queue"], second["priority"]) == ("mail", 1)
    assert job_row(db, flywheel.Client(db).insert(Email(to="z")))["queue"] == "default"  # no registry, no defaults


def test_unique_key_is_forever(db, registry, client, make_runner):
    registry.register(type("W", (flywheel.Worker,), {"kind": "email", "work": lambda self, job: None}))
    first = client.insert(Email(to="a"), unique_key="welcome:a")
    with pytest.raises(flywheel.AlreadyEnqueued) as caught:
        client.insert(Email(to="a"), unique_key="welcome:a")
    assert caught.value.job_id == first
    make_runner().run_until_idle(timeout=10)
    with pytest.raises(flywheel.AlreadyEnqueued) as again:  # still taken after the job finished
        client.insert(Email(to="a"), unique_key="welcome:a")
    assert again.value.job_id == first


def test_unique_active_key_frees_when_the_job_finishes(db, registry, client, make_runner):
    registry.register(type("W", (flywheel.Worker,), {"kind": "email", "work": lambda self, job: None}))
    first = client.insert(Email(to="a"), unique_active_key="sync:a")
    with pytest.raises(flywheel.AlreadyEnqueued) as caught:
        client.insert(Email(to="a"), unique_active_key="sync:a")
    assert caught.value.job_id == first
    make_runner().run_until_idle(timeout=10)
    second = client.insert(Email(to="a"), unique_active_key="sync:a")
    assert second != first
    assert client.insert(Email(to="a"), unique_key="sync:a")  # a separate namespace


def test_twenty_threads_racing_for_one_unique_key(db, client):
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        try:
            result = "inserted:" + client.insert(Email(to="a"), unique_key="race")
        except flywheel.AlreadyEnqueued as exc:
            result = f"already:{exc.job_id}"
        except Exception as exc:  # noqa: BLE001 - any other error is a failure of the test
            result = f"error:{exc!r}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=race) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    inserted = [o for o in outcomes if o.startswith("inserted:")]
    assert len(inserted) == 1, outcomes
    winner = inserted[0].split(":", 1)[1]
    assert sorted(outcomes) == sorted(inserted + [f"already:{winner}"] * 19)
    assert db.Job.select().where(db.Job.unique_key == "race").count() == 1


def test_outbox_commits_and_rolls_back_with_the_callers_writes(db, client):
    with db.atomic():
        kept = client.insert(Email(to="kept"))
    with pytest.raises(RuntimeError), db.atomic():
        lost = client.insert(Email(to="lost"))
        db.pw.execute_sql("SELECT 1")
        raise RuntimeError("the caller's own work failed")
    ids = {r.id for r in db.Job.select(db.Job.id)}
    assert kept in ids and lost not in ids


def test_a_unique_collision_inside_a_transaction_leaves_it_usable(db, client):
    client.insert(Email(to="a"), unique_key="k")
    with db.atomic():
        with pytest.raises(flywheel.AlreadyEnqueued):
            client.insert(Email(to="a"), unique_key="k")
        after = client.insert(Email(to="b"))  # the transaction is not poisoned
    assert job_row(db, after)["args"] == {"to": "b"}


def test_insert_many_chunks_and_reports_collisions(db, client):
    client.insert(Email(to="taken"), unique_key="taken")
    items: list[object] = [Email(to=f"user{i}") for i in range(1200)]
    items.insert(3, (Email(to="dup"), flywheel.InsertOpts(unique_key="taken")))
    items.insert(7, (Email(to="twice"), flywheel.InsertOpts(unique_key="twice", queue="mail")))
    items.insert(9, (Email(to="twice"), flywheel.InsertOpts(unique_key="twice")))
    ids = client.insert_many(items)
    assert len(ids) == len(items)
    assert ids[3] is None and ids[9] is None and ids[7] is not None
    assert sum(i is not None for i in ids) == 1201
    assert job_row(db, ids[7])["queue"] == "mail"
    assert db.Job.select().count() == 1202
    assert client.insert_many([]) == []


def test_insert_many_validates_every_row_before_writing(db, client):
    with pytest.raises(flywheel.ValidationError) as caught:
        client.insert_many([Email(to="ok"), (Email(to="bad"), flywheel.InsertOpts(queue=""))])
    assert caught.value.field == "queue" and "item 1" in str(caught.value)
    assert db.Job.select().count() == 0


class NoKind:
    pass


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.insert(NoKind()), "kind"),
        (lambda c: c.insert({"kind": "email"}), "kind"),
        (lambda c: c.enqueue("", "{}"), "kind"),
        (lambda c: c.enqueue("  ", "{}"), "kind"),
        (lambda c: c.insert(Email(to="a"), queue=""), "queue"),
        (lambda c: c.insert(Email(to="a"), max_attempts=-1), "max_attempts"),
        (lambda c: c.insert(Email(to=object())), "args"),  # type: ignore[arg-type]
        (lambda c: c.enqueue("email", "{not json"), "args"),
        (lambda c: c.enqueue("email", '{"a": NaN}x'), "args"),
        (lambda c: c.insert(Email(to="a"), tags=[1]), "tags"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(db, client, call, field):
    with pytest.raises(flywheel.ValidationError) as caught:
        call(client)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert field in str(caught.value)
    assert db.Job.select().count() == 0


def test_missing_kind_is_its_own_error(db, client):
    with pytest.raises(flywheel.MissingKind, match="NoKind"):
        client.insert(NoKind())


def test_unknown_url_scheme_names_the_known_ones():
    with pytest.raises(ValueError) as caught:
        flywheel.connect("mysql://root@localhost/db")
    assert "mysql" in str(caught.value) and "sqlite://" in str(caught.value)


def test_database_errors_surface_as_flywheel_errors(tmp_path):
    unmigrated = flywheel.connect(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(flywheel.DatabaseError, match="run `flywheel migrate`"):
        flywheel.Client(unmigrated).enqueue("x", {})
    with pytest.raises(flywheel.DatabaseError):
        flywheel.list_jobs(unmigrated)
