"""The request id that travels from a producer into the job and its worker."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("flywheel_request_id", default=None)


def request_id() -> str | None:
    """The request id in scope, or None."""
    return _request_id.get()


@contextmanager
def request_id_scope(value: str | None) -> Iterator[str | None]:
    """Put ``value`` in scope: jobs inserted inside carry it, and a worker sees its job's."""
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)
