"""The one cattrs converter for job args, outputs and views, plus JSON helpers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from flywheel.errors import ValidationError
from flywheel.storage.sanitize import check_json_text, too_deep

converter: cattrs.Converter = make_converter()
#: One compact encoder for every args payload: ``json.dumps`` with non-default options builds
#: a new encoder per call, which costs as much as the encoding of a small payload.
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
converter.register_unstructure_hook(datetime, lambda d: d.isoformat())
converter.register_structure_hook(datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v))
converter.register_unstructure_hook(date, lambda d: d.isoformat())
converter.register_structure_hook(date, lambda v, _: v if isinstance(v, date) else date.fromisoformat(v))
converter.register_unstructure_hook(timedelta, lambda d: d.total_seconds())
converter.register_structure_hook(timedelta, lambda v, _: v if isinstance(v, timedelta) else timedelta(seconds=v))


def dump_args(args: object) -> str:
    """Serialise job args (attrs, dataclass, dict) to storable JSON text; failures name ``args``.

    Args nested too deeply or holding NUL or a lone surrogate are rejected (see
    :mod:`flywheel.storage.sanitize`), never altered.
    """
    try:
        text = _encode_json(converter.unstructure(args))
    except RecursionError:
        raise too_deep("args") from None
    except (TypeError, ValueError) as exc:
        raise ValidationError("args", f"cannot be serialised to JSON: {exc}") from exc
    check_json_text(text, "args")
    return text


def load_args(text: str | bytes | dict[str, Any] | None, args_type: Any) -> Any:
    """Restore args of ``args_type`` from stored JSON (dict is passed through)."""
    data = loads_json(text)
    if args_type is None or args_type is Any or args_type is dict:
        return data
    return converter.structure(data, args_type)


def loads_json(value: str | bytes | Any) -> Any:
    """Decode JSON text; values a driver already decoded pass through."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, bytearray)):
        return json.loads(value)
    return value


def normalise_json_payload(payload: str | bytes | dict[str, Any] | list[Any] | None, *, field: str = "args") -> str:
    """Validate a caller's JSON payload and return compact, storable text; bad input names ``field``."""
    if payload is None or payload == "" or payload == b"":
        return "{}"
    if isinstance(payload, (dict, list)):
        text = dumps_json(payload, field=field)
    else:
        try:
            value = json.loads(payload)
        except RecursionError:
            raise too_deep(field) from None
        except (TypeError, ValueError) as exc:
            raise ValidationError(field, f"is not valid JSON: {exc}") from exc
        text = dumps_json(value, field=field)
    check_json_text(text, field)
    return text


def dumps_json(value: Any, *, field: str = "output") -> str:
    """Encode a JSON-able value compactly, converting attrs objects and enums."""
    try:
        return json.dumps(converter.unstructure(value), separators=(",", ":"), allow_nan=False, default=_fallback)
    except RecursionError:
        raise too_deep(field) from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"cannot be serialised to JSON: {exc}") from exc


def _fallback(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
