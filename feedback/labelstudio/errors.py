"""How a call to Label Studio failed: worth retrying, or not. Apart from the client so that code which
only handles these does not import the SDK (a second of import time)."""

from __future__ import annotations


class LabelStudioUnavailable(Exception):
    """Label Studio did not answer, or answered 5xx/429: try again later."""


class LabelStudioRefused(Exception):
    """Label Studio answered no (a bad API key, a bad request): retrying will not help."""


class LabelStudioKeyRefused(LabelStudioRefused):
    """401/403: nothing will work until the key is fixed."""
