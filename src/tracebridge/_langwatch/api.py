"""`langwatch`: the LangWatch REST API client factory (`langwatch_api`) and its two ends.

The source (search, thread, trace) is `api_source.LangWatchApiSource`, the sink (collector) is
`api_sink.LangWatchApiSink`; both are re-exported here, so `from tracebridge._langwatch.api
import LangWatchApiSink` keeps working. `langwatch_api(settings)` is the one place LangWatch's
auth header (`X-Auth-Token`) is built; without a key it is a `UsageError` naming the variable.

We build the client on our own `_http.Api` (retries, redaction, error messages shared with Opik)
rather than the `langwatch` SDK, which this CLI does not depend on.
"""

from __future__ import annotations

import httpx

from .._config import Settings
from .._errors import UsageError
from .._http import Api, RetryPolicy
from .api_sink import LangWatchApiSink
from .api_source import LangWatchApiSource

__all__ = ["LangWatchApiSink", "LangWatchApiSource", "langwatch_api"]


def langwatch_api(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> Api:
    """The LangWatch API of the settings, authenticated with `X-Auth-Token`."""
    if settings.langwatch_api_key is None:
        raise UsageError(
            "no LangWatch API key: set LANGWATCH_API_KEY (or api_key under [langwatch])"
        )
    return Api(
        name="LangWatch",
        base_url=settings.langwatch_endpoint,
        headers={"X-Auth-Token": settings.langwatch_api_key.get_secret_value()},
        auth_variable="LANGWATCH_API_KEY",
        transport=transport,
        policy=policy,
    )
