"""What may be stored: hostile input is rejected, an attempt's outcome is repaired.

Two characters cannot be stored everywhere: NUL (PostgreSQL refuses it in ``text``, its driver
raises ``ValueError`` before sending it, and ``jsonb`` rejects ``\\u0000``) and a lone
surrogate (not valid UTF-8, so no driver can encode it). Deeply nested JSON exhausts
Python's recursion limit in every encoder and decoder on the way.

The two directions are handled differently, on purpose:

- **Input** (job args and insert options) is the caller's data: it is *rejected* with a
  ``ValidationError`` naming the field, never silently altered (:func:`check_json_text`,
  :func:`check_text`, :func:`require_aware`).
- **Outcomes** (a worker's output and error message) are *repaired* (:func:`clean_output`,
  :func:`clean_error`): the attempt already happened, and refusing to record it would block
  its finalisation. NUL and lone surrogates become U+FFFD (the Unicode replacement
  character) and oversized text is cut with a visible marker.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flywheel.errors import ValidationError

#: Deepest nesting of lists and objects accepted in job args (the top-level object is level 1).
MAX_JSON_DEPTH = 100
#: Longest error message stored on a run row, in UTF-8 bytes, the marker included.
MAX_ERROR_BYTES = 4096
#: Largest output stored on a run row, in bytes of JSON text; a larger one is replaced by a marker object.
MAX_OUTPUT_BYTES = 1024 * 1024
#: How much of an oversized output's JSON text its marker keeps, in characters.
OUTPUT_PREVIEW_CHARS = 1024

REPLACEMENT = "\ufffd"
TRUNCATED = " …[truncated]"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _suspect(text: str) -> bool:
    """json.dumps (ensure_ascii) writes NUL and every surrogate as an escape, so text without
    these two substrings holds neither; text with them may (or may hold a literal ``\\u...``)."""
    return "\\u0000" in text or "\\ud" in text


# -- input: reject -------------------------------------------------------------------------------


def check_text(value: str, field: str) -> None:
    """Reject a string holding NUL or a lone surrogate, naming ``field``."""
    problem = _text_problem(value)
    if problem is not None:
        raise ValidationError(field, f"contains {problem}, which cannot be stored")


def check_json_text(text: str, field: str = "args") -> None:
    """Reject JSON text (as ``json.dumps`` writes it) that nests too deeply or holds unstorable strings.

    The common case costs two substring searches and two counts: only text that could
    break a rule is decoded and walked.
    """
    if not _suspect(text) and text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep(field) from None
    _check_tree(value, field)


def too_deep(field: str) -> ValidationError:
    """The error for a value nested beyond :data:`MAX_JSON_DEPTH` (or beyond Python's recursion limit)."""
    return ValidationError(field, f"is nested more than {MAX_JSON_DEPTH} levels deep")


def require_aware(value: datetime | None, field: str) -> datetime | None:
    """Reject a naive datetime: an instant without a time zone is ambiguous, flywheel never guesses."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field,
                              f"must be timezone-aware (e.g. datetime.now(UTC)), not the naive {value.isoformat()}")
    return value


def _check_tree(value: Any, field: str) -> None:
    """Walk decoded JSON without recursion: depth, then every key and string."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            _check_leaf(node, field, path)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise too_deep(field)
        if isinstance(node, dict):
            for key, item in node.items():
                _check_leaf(key, field, f"{path} (a key)")
                stack.append((item, depth + 1, f"{path}.{key}"))
        else:
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node))


def _check_leaf(text: str, field: str, path: str) -> None:
    problem = _text_problem(text)
    if problem is not None:
        raise ValidationError(field, f"contains {problem} at {_printable(path)}, which cannot be stored")


def _text_problem(text: str) -> str | None:
    if not _holds_unstorable(text):
        return None
    return "a NUL character (\\u0000)" if "\x00" in text else "a lone surrogate (not valid Unicode)"


def _printable(path: str) -> str:
    path = path if len(path) <= 200 else path[:200] + "…"
    return _UNSTORABLE.sub(REPLACEMENT, path)


# -- outcomes: repair ----------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _holds_unstorable(text) else text


def _holds_unstorable(text: str) -> bool:
    return "\x00" in text or (not text.isascii() and _UNSTORABLE.search(text) is not None)


def bound_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes on a character boundary, ending with a visible marker."""
    if len(text) <= limit // 4:  # four bytes per character at most: surely within the limit
        return text
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit:
        return text
    room = limit - len(TRUNCATED.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore") + TRUNCATED


def clean_error(message: str | None) -> str | None:
    """An error message as stored on a run row: storable characters, at most :data:`MAX_ERROR_BYTES`."""
    if message is None:
        return None
    return bound_text(clean_text(str(message)), MAX_ERROR_BYTES)


def clean_output(output_json: str | None) -> str | None:
    """A run's output JSON as stored: storable strings, and a marker object when it is too large.

    The marker is ``{"truncated": true, "bytes": N, "preview": "<first JSON characters>"}``,
    itself valid JSON, so readers of the column never meet cut-off JSON.
    """
    if output_json is None:
        return None
    text = output_json
    if _suspect(text) or _holds_unstorable(text):
        text = _repair_json(text)
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size <= MAX_OUTPUT_BYTES:
        return text
    marker = {"truncated": True, "bytes": size, "preview": clean_text(text[:OUTPUT_PREVIEW_CHARS])}
    return json.dumps(marker, separators=(",", ":"))


def _repair_json(text: str) -> str:
    """Decode, replace unstorable characters in every key and string, encode again (no recursion)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return json.dumps({"unreadable_output": clean_text(text[:OUTPUT_PREVIEW_CHARS])})
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        node = parent[key]
        if isinstance(node, str):
            parent[key] = clean_text(node)
        elif isinstance(node, list):
            stack.extend((node, i) for i in range(len(node)))
        elif isinstance(node, dict):
            cleaned = {clean_text(k): v for k, v in node.items()}
            parent[key] = cleaned
            stack.extend((cleaned, k) for k in cleaned)
    try:
        return json.dumps(root[0], separators=(",", ":"))
    except RecursionError:
        return json.dumps({"unreadable_output": "nested too deeply to store"})
