"""Credentials carried in URLs (``http://user:pass@host``, ``redis://:pass@host``): split off for use,
masked wherever a URL is shown (``hhh config check``, logs, error messages)."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

# scheme://userinfo@ anywhere in a text: a URL alone, or one inside an exception's message.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s'\"]*@")


def mask_credentials(text: str) -> str:
    """Replace the userinfo of every URL in ``text`` by ``***``.

    >>> mask_credentials("http://user:s3cret@llm.internal:8000/v1")
    'http://***@llm.internal:8000/v1'
    >>> mask_credentials("Client error '401' for url 'redis://:pw@cache:6379/0'")
    "Client error '401' for url 'redis://***@cache:6379/0'"
    >>> mask_credentials("http://llm.internal/v1")
    'http://llm.internal/v1'
    """
    return _USERINFO.sub(r"\g<scheme>***@", text)


def has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its userinfo, and the HTTP Basic ``authorization`` value it carried (or None).

    >>> split_credentials("http://user:s3cret@host:8000/v1")
    ('http://host:8000/v1', 'Basic dXNlcjpzM2NyZXQ=')
    >>> split_credentials("http://host/v1")
    ('http://host/v1', None)
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=host))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return bare, "Basic " + base64.b64encode(pair.encode()).decode("ascii")
