"""flywheel-plugin-hello: a complete, minimal flywheel plugin.

It does the three things most plugins do, each with one hook implementation:

* ``flywheel_register_workers`` adds a worker kind, ``hello``, with typed args;
* ``flywheel_on_finish`` observes every finished attempt (here: tallies outcomes and
  logs a line);
* ``flywheel_commands`` adds ``flywheel hello NAME``, which enqueues a ``hello`` job.

The module is the plugin: ``pyproject.toml`` points the ``flywheel`` entry-point group
at it, and flywheel registers it when a plugin manager is built. Importing it has no
side effects.
"""

from __future__ import annotations

import collections
import logging
from typing import ClassVar

import attrs
import click

import flywheel

logger = logging.getLogger("flywheel_plugin_hello")

#: Outcomes of the attempts finished in this process, e.g. ``{"success": 3, "error": 1}``.
TALLY: collections.Counter[str] = collections.Counter()


@attrs.frozen
class Hello:
    """The args of a ``hello`` job."""

    kind: ClassVar[str] = "hello"
    name: str


class HelloWorker(flywheel.Worker[Hello]):
    """Greets ``job.args.name``; the greeting is stored as the run's output."""

    kind = "hello"

    def work(self, job: flywheel.Job[Hello]) -> flywheel.Result:
        name = job.args.name.strip()
        if not name:
            raise flywheel.Permanent("hello: a name is required")  # retrying would not help
        greeting = f"Hello, {name}!"
        job.logger.info(greeting)
        return flywheel.Result(output={"greeting": greeting})


@flywheel.hookimpl
def flywheel_register_workers(registry: flywheel.Registry) -> None:
    registry.register(HelloWorker())


@flywheel.hookimpl
def flywheel_on_finish(event: flywheel.FinishEvent) -> None:
    # Observers run on the runner's finaliser thread: keep them quick, never block.
    TALLY[str(event.outcome)] += 1
    logger.info("hello: job %s (%s) attempt %d ended %s", event.job_id, event.kind, event.attempt, event.outcome)


@flywheel.hookimpl
def flywheel_commands(cli: click.Group) -> None:
    @cli.command()
    @click.argument("name")
    @click.pass_context
    def hello(ctx: click.Context, name: str) -> None:
        """Enqueue a `hello` job for NAME and print its id."""
        db = ctx.obj.db()  # the database named by the global --db option
        click.echo(flywheel.Client(db).insert(Hello(name=name)))
