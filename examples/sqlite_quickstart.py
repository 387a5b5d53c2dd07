"""Enqueue typed jobs into an embedded SQLite file, run them, and print what the database says.

    python examples/sqlite_quickstart.py
"""

from __future__ import annotations

from typing import ClassVar

import attrs

import flywheel


@attrs.frozen
class SendEmail:
    kind: ClassVar[str] = "send_email"
    to: str
    subject: str


class SendEmailWorker(flywheel.Worker[SendEmail]):
    kind = "send_email"

    def work(self, job: flywheel.Job[SendEmail]) -> flywheel.Result:
        if "@" not in job.args.to:
            raise flywheel.Permanent(f"not an email address: {job.args.to}")
        return flywheel.Result(output={"sent_to": job.args.to})


def main() -> None:
    db = flywheel.connect("sqlite:///quickstart.db")
    flywheel.migrate(db)
    registry = flywheel.Registry()
    registry.register(SendEmailWorker())

    client = flywheel.Client(db, registry=registry)
    ids = [
        client.insert(SendEmail(to="ada@example.com", subject="Welcome")),
        client.insert(SendEmail(to="grace@example.com", subject="Hello"), priority=10),
        client.insert(SendEmail(to="nobody", subject="Bounce")),
    ]

    ran = flywheel.Runner(db, registry, concurrency=4).run_until_idle(timeout=60)
    print(f"ran {ran} attempt(s)")
    for job_id in ids:
        job = flywheel.find_job(db, job_id)
        last = flywheel.list_runs(db, job_id, limit=1)[0]
        detail = last.output if last.error is None else last.error
        print(f"{job.id}  {job.kind}  {job.state:<10} attempt {job.attempt}  {detail}")


if __name__ == "__main__":
    main()
