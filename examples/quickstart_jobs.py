"""The workers of the CLI walkthrough: ``flywheel serve --app examples.quickstart_jobs``.

``flywheel serve`` imports this module (from the working directory) and runs the workers of
its ``flywheel.Registry``, next to those of every installed plugin:

    flywheel migrate
    flywheel enqueue send_email '{"to": "a@b"}'
    flywheel serve --app examples.quickstart_jobs
"""

from __future__ import annotations

import logging
from typing import Any

import flywheel

registry = flywheel.Registry()
log = logging.getLogger("examples.quickstart_jobs")


@registry.worker("send_email")
def send_email(job: flywheel.Job[dict[str, Any]]) -> flywheel.Result:
    """Pretend to send an email to ``args["to"]``; the output is kept on the job's run."""
    to = job.args.get("to")
    if not to:
        raise flywheel.Permanent("send_email: args need a 'to' address")
    log.info("sending email to %s (attempt %d)", to, job.attempt)
    return flywheel.Result(output={"sent_to": to, "subject": job.args.get("subject", "Hello")})
