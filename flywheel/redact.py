"""Keeping a database URL's password out of errors, log lines and CLI output.

A URL such as ``postgresql://user:pass@host/db`` carries a secret, and a *malformed* one
(an unclosed ``[`` IPv6 host, an unencoded ``@`` in the password) is where it leaks: the
standard parser gives up or splits it in the wrong place, and a driver quotes the pieces in
its error. So the password is found twice: from the parsed URL and from the raw string
(everything between ``//`` and the last ``@``, however malformed the rest is), and every
spelling of it, and every piece of it a parser could have split off, is scrubbed.

Dialect-free: drivers (``Driver.display_url``) and the CLI use it.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"

#: A ``password=value`` in a query string or a libpq conninfo (quoted or not).
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
#: Pieces of a password shorter than this are not scrubbed on their own (a one-letter piece
#: would blank every occurrence of that letter); the whole password always is.
_MIN_PIECE = 3


def _raw_userinfo(url: str) -> str | None:
    """Everything between ``//`` and the last ``@`` after it, or None (no ``//`` or no ``@``)."""
    start = url.find("//")
    if start < 0:
        return None
    rest = url[start + 2 :]
    at = rest.rfind("@")
    return rest[:at] if at >= 0 else None


def redact_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (also when the URL is malformed).

    A well-formed URL keeps its user name (``postgresql://bob:***@db/app``); in a malformed one
    the text between the user's ``:`` and the last ``@`` is hidden, and ``password=``
    parameters are masked either way.
    """
    try:
        parts = urlsplit(url)
        well_formed = "@" in parts.netloc and parts.netloc.rpartition("@")[0] == _raw_userinfo(url)
        if well_formed or _raw_userinfo(url) is None:
            netloc = parts.netloc
            if "@" in netloc:
                userinfo, _, hosts = netloc.rpartition("@")
                if ":" in userinfo:
                    userinfo = userinfo.split(":", 1)[0] + ":" + MASK
                netloc = f"{userinfo}@{hosts}"
            query = parts.query
            if query and any(k.lower() == "password" for k, _ in parse_qsl(query, keep_blank_values=True)):
                pairs = parse_qsl(query, keep_blank_values=True)
                query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*-=%/")
            return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", urlunsplit((parts.scheme, netloc, parts.path, query,
                                                                     parts.fragment)))
    except ValueError:
        pass
    # Malformed (or an '@' outside the authority the parser found): work on the raw string.
    raw = _raw_userinfo(url)
    text = url
    if raw is not None and ":" in raw:
        start = url.find("//") + 2
        user = raw.split(":", 1)[0]
        text = url[:start] + user + ":" + MASK + url[start + len(raw) :]
    return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", text)


def url_secrets(url: str) -> list[str]:
    """Every text of ``url``'s password a parser or a driver's error message could show, longest first.

    The password as the raw string has it (between the user's ``:`` and the last ``@``), as
    ``urlsplit`` and libpq read it (up to the first ``@`` or ``/``), percent-decoded and
    encoded, each piece of it between ``@`` and ``/`` (where a parser splits it), and any
    ``password=`` query parameter.
    """
    candidates: set[str] = set()
    userinfo = _raw_userinfo(url)
    if userinfo is not None and ":" in userinfo:
        candidates.add(userinfo.split(":", 1)[1])
    start = url.find("//")
    if start >= 0:  # libpq's reading: the user info ends at the first '@' or '/'
        head = re.match(r"[^@/]*@", url[start + 2 :])
        if head and ":" in head.group(0):
            candidates.add(head.group(0)[:-1].split(":", 1)[1])
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        netloc_userinfo = parts.netloc.rpartition("@")[0]
        if ":" in netloc_userinfo:
            candidates.add(netloc_userinfo.split(":", 1)[1])
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() == "password":
                candidates.add(value)
    for match in _PASSWORD_PARAM.finditer(url):
        candidates.add(match.group(2))
    secrets: set[str] = set()
    for candidate in candidates:
        for spelling in (candidate, unquote(candidate), quote(unquote(candidate), safe="")):
            secrets.add(spelling)
            secrets.update(piece for piece in re.split(r"[@/]", spelling) if len(piece) >= _MIN_PIECE)
    return sorted((s for s in secrets if s and s != MASK), key=len, reverse=True)


class UrlSecrets:
    """Scrubs one URL's password from any text (error messages, log lines, CLI output)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.display = redact_url(url)
        self._secrets = url_secrets(url)

    def scrub(self, text: str) -> str:
        """``text`` with the URL shown redacted and every spelling of its password as ``***``."""
        if self.url and self.url != self.display:
            text = text.replace(self.url, self.display)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        # A driver that quotes a conninfo (``password=...``) is covered too.
        return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", text)


def scrub_url_secrets(text: str, url: str | None) -> str:
    """``text`` with ``url``'s password hidden; the helper for one-off messages (the CLI's errors)."""
    return UrlSecrets(url).scrub(text) if url else text


__all__ = ["MASK", "UrlSecrets", "redact_url", "scrub_url_secrets", "url_secrets"]
