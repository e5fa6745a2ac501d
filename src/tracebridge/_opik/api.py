"""`opik`: the Opik REST API client factory (`opik_api`, `is_opik_cloud`) and its two ends.

The sink (batch upserts) is `api_sink.OpikApiSink`, the source (paged reads) is
`api_source.OpikApiSource`; both are re-exported here, so `from tracebridge._opik.api import
OpikApiSink` keeps working. `opik_api(settings)` is the one place Opik's auth headers are built
(`authorization: <key>`, no Bearer, and `Comet-Workspace`).

We build the client on our own `_http.Api` (retries, redaction, error messages shared with
LangWatch) rather than the `opik` SDK, which this CLI does not depend on.
"""

from __future__ import annotations

import httpx

from .._config import Settings
from .._http import Api, RetryPolicy
from .api_sink import OpikApiSink
from .api_source import OpikApiSource

__all__ = ["OpikApiSink", "OpikApiSource", "is_opik_cloud", "opik_api"]

_CLOUD_HOSTS = frozenset({"www.comet.com", "comet.com"})  # reference §1, §5: Opik Cloud


def is_opik_cloud(url: str) -> bool:
    """True when `url` is Opik Cloud's API (`https://www.comet.com/opik/api`)."""
    try:
        return httpx.URL(url).host.lower() in _CLOUD_HOSTS
    except httpx.InvalidURL:
        return False


def opik_api(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> Api:
    """The Opik API of the settings: `authorization: <key>` (no Bearer) and `Comet-Workspace`."""
    headers = {"Comet-Workspace": settings.opik_workspace}
    if settings.opik_api_key is not None:
        headers["authorization"] = settings.opik_api_key.get_secret_value()
    return Api(
        name="Opik",
        base_url=settings.opik_url,
        headers=headers,
        auth_variable="OPIK_API_KEY and OPIK_WORKSPACE",
        transport=transport,
        policy=policy,
    )
