"""Who may press the buttons: read-only mode, the operator token, CSRF tokens and the Host check.

The policy, decided once from the bind address and the environment:

- ``--read-only`` (or ``read_only=True``): no actions, whatever else holds.
- Bound to loopback with no token set: actions are open to whoever can reach the port
  (the same people who could run ``flywheel jobs retry``). The ``Host`` header must name
  loopback, so a web page cannot reach the dashboard through DNS rebinding.
- ``FLYWHEEL_DASHBOARD_TOKEN`` set: actions need it, as ``Authorization: Bearer <token>``
  or through the login form (which sets an HttpOnly session cookie derived from it).
- Bound beyond loopback with no token: read-only.

Every POST also needs a CSRF token: the hidden form field must be the HMAC of the
browser's ``fw_csrf`` cookie under a per-process secret, and an ``Origin`` header, when
sent, must be this dashboard's own.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from http.cookies import SimpleCookie

TOKEN_ENV = "FLYWHEEL_DASHBOARD_TOKEN"
CSRF_COOKIE = "fw_csrf"
SESSION_COOKIE = "fw_session"
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether a bind host only accepts connections from this machine."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Forbidden(Exception):
    """An action refused: the message says why, the status is 403."""


class Guard:
    """The security decisions of one dashboard; see the module docstring."""

    def __init__(self, host: str, *, read_only: bool = False, token: str | None = None) -> None:
        self.loopback = is_loopback(host)
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.read_only = read_only or (not self.loopback and self.token is None)
        self._secret = secrets.token_bytes(32)
        self.port = 0

    @property
    def mode(self) -> str:
        if self.read_only:
            return "read-only"
        return "actions need the token" if self.token else "actions enabled"

    # -- Host ----------------------------------------------------------------------

    def host_allowed(self, host_header: str | None) -> bool:
        """Loopback binds answer only to loopback host names (no DNS rebinding); others to any."""
        if not self.loopback:
            return True
        if not host_header:
            return False
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(name)

    # -- the operator token ------------------------------------------------------

    def session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"flywheel-dashboard-session", hashlib.sha256).hexdigest()

    def authorised(self, authorization: str | None, cookies: SimpleCookie) -> bool:
        """Whether this request may act (ignoring CSRF)."""
        if self.read_only:
            return False
        if self.token is None:
            return True
        if authorization and authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization[7:].strip().encode(), self.token.encode())
        morsel = cookies.get(SESSION_COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session_value().encode())

    def check_token(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    # -- CSRF ----------------------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(16)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, cookies: SimpleCookie, offered: str | None, origin: str | None, host: str | None) -> None:
        """Raise :class:`Forbidden` unless the form's token matches the cookie and the origin is ours."""
        if origin and origin != "null" and host and origin.rstrip("/") not in (f"http://{host}", f"https://{host}"):
            raise Forbidden(f"cross-origin request refused (Origin {origin})")
        morsel = cookies.get(CSRF_COOKIE)
        if morsel is None or not offered:
            raise Forbidden("missing CSRF token: reload the page and try again")
        if not hmac.compare_digest(offered.encode(), self.csrf_token(morsel.value).encode()):
            raise Forbidden("invalid CSRF token: reload the page and try again")
