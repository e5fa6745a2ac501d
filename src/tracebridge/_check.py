"""`check`: can tracebridge reach both platforms with these credentials, and what does it see?"""

from __future__ import annotations

import httpx

from ._config import Settings
from ._errors import ServerError
from ._http import Api, RetryPolicy

__all__ = ["check_langwatch", "check_opik"]

_QUICK = RetryPolicy(attempts=3, budget=30.0)


async def check_opik(
    settings: Settings, project: str | None, transport: httpx.AsyncBaseTransport | None = None
) -> list[str]:
    """Lines describing the Opik connection; AuthError when the credentials are refused."""
    from ._opik.api import opik_api

    api = opik_api(settings, transport, _QUICK)
    try:
        lines = [f"Opik: {settings.opik_url}"]
        response = await api.send("GET", "v1/private/auth/workspace")
        if response.is_success:
            workspace = response.json().get("workspace_name", settings.opik_workspace)
        else:
            response = await api.send("POST", "v1/private/auth")
            if not response.is_success:
                raise ServerError(f"Opik answered {response.status_code} to the access check")
            workspace = settings.opik_workspace
        lines.append(f"  workspace: {workspace} (credentials accepted)")
        name = project or settings.opik_project or "Default Project"
        response = await api.send("POST", "v1/private/projects/retrieve", json_body={"name": name})
        if response.is_success:
            lines.append(f"  project: {name} (id {response.json().get('id')})")
        elif response.status_code == 404:
            lines.append(f"  project: {name} (not there yet: the first write creates it)")
        else:
            raise ServerError(f"Opik answered {response.status_code} looking up project {name!r}")
        return lines
    finally:
        await api.aclose()


async def check_langwatch(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> list[str]:
    """Lines describing the LangWatch connection; AuthError when the key is refused."""
    from ._langwatch.api import langwatch_api

    api: Api = langwatch_api(settings, transport, _QUICK)
    try:
        body = {
            "startDate": 946_684_800_000,
            "endDate": 4_102_444_800_000,
            "pageSize": 1,
            "format": "json",
            "includeSpans": False,
        }
        response = await api.send("POST", "api/traces/search", json_body=body)
        if not response.is_success:
            raise ServerError(f"LangWatch answered {response.status_code} to a trace search")
        traces = response.json().get("traces") or []
        project = traces[0].get("project_id") if traces else None
        found = f"project {project}" if project else "no traces yet"
        return [f"LangWatch: {settings.langwatch_endpoint}", f"  {found} (credentials accepted)"]
    finally:
        await api.aclose()
