"""Broker URLs at the edges: one form inside costserve, and never a password in output, files or argv.

Redis URLs may carry credentials in the userinfo (`redis://:PW@host/0`) or, as redis-py also
accepts, in the query (`redis://host/0?password=PW`). kombu reads only the first (the second
makes it raise a TypeError) and redacts only the first, so query credentials are moved into
the userinfo once, where the URL enters costserve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from costserve.config import Settings

CREDENTIAL_PARAMS = ("username", "password")


def normalize_broker_url(url: str) -> str:
    """`url` with `username`/`password` query parameters moved into its userinfo (URL-quoted); other URLs unchanged."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {k: v for k, v in query if k in CREDENTIAL_PARAMS}
    if not given:
        return url
    user = given.get("username", parts.username or "")
    password = given.get("password", parts.password or "")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    rest = urlencode([(k, v) for k, v in query if k not in CREDENTIAL_PARAMS])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


def has_password(url: str) -> bool:
    """Whether a (normalized) broker URL carries a password."""
    return bool(urlsplit(url).password)


def redact_url(url: str) -> str:
    """A broker URL without its password, for output (kombu's own redaction, after normalizing)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(normalize_broker_url(url), mask="***"))


def configured_broker(settings: Settings) -> str | None:
    """The `broker` setting (config file or environment) in costserve's one URL form, or None."""
    return normalize_broker_url(settings.broker) if settings.broker else None
