"""`open_endpoints`: a file source's pages grow to what an API sink writes best; the settings
reach the endpoints they tune.

`_file_source.PAGE_SPANS` keeps a file-to-file run's pages small (memory); an API sink's
batches are at most a page big, so it asks for more (`page_spans`), and `open_endpoints` applies
it. What a page holds never changes what is written (the goldens pin file paths byte for byte).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import langwatch_project
from tracebridge import Window, load_settings
from tracebridge._endpoint_specs import (
    mappings_for,
    open_endpoints,
    open_source,
    parse_endpoint,
)
from tracebridge._file_source import PAGE_SPANS, FileSource
from tracebridge._interfaces import Counts
from tracebridge._langwatch.api_source import LangWatchApiSource


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sink", "grown"), [("opik", True), ("langwatch", True), ("opik-dir:out", False)]
)
async def test_an_api_sink_asks_a_file_source_for_larger_pages(
    tmp_path: Path, sink: str, grown: bool
) -> None:
    source_file = tmp_path / "lw.jsonl"
    with source_file.open("w", encoding="utf-8") as handle:
        for trace in langwatch_project(300, 60, seed=2, start_ms=1_700_000_000_000):
            handle.write(json.dumps(trace) + "\n")
    settings = load_settings(
        None,
        {"state_dir": tmp_path / "state", "langwatch_api_key": "sk-lw-test"},
        environ={},
    )
    to = parse_endpoint(sink if ":" not in sink else f"opik-dir:{tmp_path / 'out'}")
    src, dst = await open_endpoints(
        parse_endpoint(f"langwatch-file:{source_file}"),
        to,
        settings=settings,
        mappings=mappings_for(settings, None, to),
        source_project=None,
        target_project="p",
    )
    try:
        assert isinstance(src, FileSource)
        assert (src.page_spans > PAGE_SPANS) is grown
        pages = [page async for page in src.pages(Window(), None)]
        spans = [sum(Counts.of(u).spans for u in p.units) for p in pages]
        if grown:
            assert max(spans) > PAGE_SPANS  # a page is bigger than a file-to-file run's
        assert sum(spans) == sum(
            len(t["spans"])
            for t in map(json.loads, source_file.read_text(encoding="utf-8").splitlines())
        )
    finally:
        await src.aclose()
        await dst.aclose()


@pytest.mark.parametrize("concurrency", [None, 5])
def test_the_langwatch_source_reads_threads_as_many_at_once_as_configured(
    tmp_path: Path, concurrency: int | None
) -> None:
    """`[langwatch] concurrency` (default 32) is the thread reads a LangWatch source keeps in
    flight too (measured at 20 ms a request, 1,000 traces: `langwatch → langwatch-file` took
    2.7-3.4 s with 8, 2.2-2.3 s with 32)."""
    values: dict[str, object] = {"state_dir": tmp_path, "langwatch_api_key": "sk-lw-test"}
    if concurrency is not None:
        values["langwatch_concurrency"] = concurrency
    source = open_source("langwatch", settings=load_settings(None, values, environ={}))
    assert isinstance(source, LangWatchApiSource)
    assert source.concurrency == (concurrency or 32)
