"""The security and robustness part of the suite: one module per threat, named so a reader sees what
each test defends against. Unit-level attacks use the fake upstream; the rest use the real servers."""

from __future__ import annotations

# The same fixtures as the unit and integration suites, so an attack can be tried at either level.
from tests.integration.conftest import (  # noqa: F401
    async_client,
    gateway_url,
    labelstudio,
    llama_url,
    server_logs,
    stub,
    sync_client,
)
from tests.unit.conftest import client, fake_upstream, settings  # noqa: F401
