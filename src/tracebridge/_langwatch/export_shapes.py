"""What a LangWatch export file is, and its records one by one without holding the file.

Contract:

- `detect(path)` names the shape from the first non-whitespace byte (after a UTF-8 BOM):
  `[` is a JSON array (`langwatch trace export --format json`: `JSON.stringify(traces, null, 2)`),
  anything else is JSONL (`--format jsonl`, one search-result trace per line), whatever the file
  is called. Exports tracebridge cannot migrate faithfully stop there with a `UsageError` that
  says which export to use instead: CSV (`--format csv`, or the web UI's CSV), the web UI's JSONL
  (`POST /api/export/traces/download`: flat records with `timestamp` and no `timestamps`, without
  `thread_id`, `user_id`, `customer_id` or labels) and UTF-16 text.
- `scan(path, shape, digest)` yields every record with its `Locator` (byte offset and length,
  its ordinal: the line of a JSONL file or the element number of an array, and its first line),
  the parsed object or why it is not one. Memory holds one record and one read buffer: an array
  is decoded element by element with `json.JSONDecoder.raw_decode` over a sliding buffer, and a
  broken element is stepped over by a small string/escape/depth scanner. Every byte read goes
  into `digest`, so it fingerprints the whole content in both shapes.
- `load(handle, locator)` reads one record back: a seek and one parse.
- `is_preview(text)` tells a value cut to LangWatch's search preview (`utf8Preview` in
  `platform/app/src/server/app-layer/traces/lean-for-projection.ts`: at most 64 KiB of UTF-8,
  backed off to a code point boundary, then `…`; long strings inside a structured preview are cut
  the same way at 8 KiB). A preview that only dropped middle chat messages carries no mark.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, Protocol

from .._errors import UsageError
from .._json import json_lines, loads

__all__ = [
    "EXPORT_HINT",
    "Locator",
    "Scanned",
    "Shape",
    "detect",
    "is_preview",
    "load",
    "parse",
    "scan",
    "where",
]

Shape = Literal["jsonl", "array"]

#: The export tracebridge reads whole: what every "use this instead" message names.
EXPORT_HINT = "langwatch trace export --format jsonl --include-spans --output traces.jsonl"

PREVIEW_BYTES = 64 * 1024
_CLAMP_BYTES = 8 * 1024  # a long string inside a structure-preserving preview
_ELLIPSIS = "…"
_BOM = codecs.BOM_UTF8
_CHUNK = 1 << 20
_WHITESPACE = b" \t\r\n"
_SKIP_WS = re.compile(r"[ \t\r\n]*")
_STRUCTURE = re.compile(r'["{}\[\],]')
#: A decode error this close to the end of the buffer may only mean "read more".
_NEAR_END = 32


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


class Locator(NamedTuple):
    """Where one record is: bytes [offset, offset + length), its line or element number
    (`ordinal`), and the line it starts on."""

    offset: int
    length: int
    ordinal: int
    line: int


class Scanned(NamedTuple):
    """One record as the index pass sees it: the object, or why there is none (and its text)."""

    locator: Locator
    record: dict[str, Any] | None
    problem: str | None
    raw: str | None


def where(path: Path, shape: Shape, locator: Locator) -> str:
    """How a record is named in dead letters and warnings: `file:line` or `file: element N`."""
    if shape == "jsonl":
        return f"{path}:{locator.line}"
    return f"{path}: element {locator.ordinal} (line {locator.line})"


# ------------------------------------------------------------------------------------ detection


def detect(path: Path) -> Shape:
    """The shape of `path`, or a UsageError for an export that cannot be migrated faithfully."""
    label = f"langwatch-file:{path}"
    with path.open("rb") as handle:
        head = handle.read(4096)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise UsageError(
                f"{label} is UTF-16 text (as PowerShell's `>` writes): convert it to UTF-8, or "
                f"export with `{EXPORT_HINT}`"
            )
        head = head.removeprefix(_BOM).lstrip(_WHITESPACE)
        while not head:
            more = handle.read(_CHUNK)
            if not more:
                return "jsonl"  # empty: no records
            head = more.lstrip(_WHITESPACE)
        first_line = head.split(b"\n", 1)[0]
    shape: Shape = "array" if head.startswith(b"[") else "jsonl"
    if shape == "jsonl" and not head.startswith(b"{") and _is_csv_header(first_line):
        raise UsageError(
            f"{label} is a CSV export (its header starts with trace_id): CSV has no spans, "
            f"metadata, threads or evaluations. Export JSONL instead: `{EXPORT_HINT}`"
        )
    scanned = scan(path, shape)
    try:
        for n, item in enumerate(scanned):
            if item.record is not None:
                if _is_web_export(item.record):
                    raise UsageError(
                        f"{label} is LangWatch's web-UI export (flat records with `timestamp`, "
                        "no `timestamps`): it drops thread_id, user_id, customer_id and labels, "
                        f"so it cannot be migrated faithfully. Export with the CLI instead: "
                        f"`{EXPORT_HINT}`"
                    )
                break
            if n >= 20:
                break
    finally:
        scanned.close()
    return shape


def _is_csv_header(line: bytes) -> bool:
    first = line.removeprefix(_BOM).split(b",", 1)
    return len(first) == 2 and first[0].strip().strip(b'"') == b"trace_id"


def _is_web_export(record: dict[str, Any]) -> bool:
    """The web UI's flat JSONL (`serializeTraceTo{Summary,Full}Json`): `timestamp` (ms) and
    top-level metrics instead of the search result's `timestamps` and `metrics`."""
    return "timestamps" not in record and ("timestamp" in record or "total_time_ms" in record)


# ---------------------------------------------------------------------------------- reading


def parse(raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """One record's text as a trace object, or why it is not one (never raises)."""
    try:
        record = loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
    except RecursionError:
        return None, _TOO_DEEP
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not a trace object"
    return record, None


_TOO_DEEP = "JSON nested too deeply to read (deeper than Python's JSON parser allows)"


def load(handle: IO[bytes], locator: Locator) -> tuple[dict[str, Any] | None, str | None]:
    """The record at `locator`, read again from an open file."""
    handle.seek(locator.offset)
    return parse(handle.read(locator.length))


def scan(path: Path, shape: Shape, digest: _Digest | None = None) -> Generator[Scanned, None, None]:
    """Every record of the file in order (blank lines are not records)."""
    with path.open("rb") as handle:
        if shape == "jsonl":
            yield from _scan_lines(handle, digest)
        else:
            yield from _ArrayScanner(handle, digest).scan()


def _scan_lines(handle: IO[bytes], digest: _Digest | None) -> Iterator[Scanned]:
    for here, lineno, raw in json_lines(handle):
        if digest is not None:
            digest.update(raw)
        if lineno == 1 and raw.startswith(_BOM):
            raw, here = raw[len(_BOM) :], here + len(_BOM)
        if not raw.strip():
            continue
        record, problem = parse(raw)
        text = None if problem is None else raw.decode("utf-8", "replace")
        yield Scanned(Locator(here, len(raw), lineno, lineno), record, problem, text)


class _ArrayScanner:
    """The elements of one or more top-level JSON arrays, decoded one at a time.

    `buf[pos:]` is decoded text not yet consumed; `offset` and `line` are the byte offset and
    line number of `buf[pos]`. The buffer is trimmed between elements only, so indices into it
    hold while one element is read. Invalid UTF-8 is decoded with `surrogateescape`: byte
    lengths stay exact, and such an element is reported rather than decoded.
    """

    def __init__(self, handle: IO[bytes], digest: _Digest | None) -> None:
        self.handle = handle
        self.digest = digest
        self.decoder = json.JSONDecoder()
        self.text = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.pos = 0
        self.offset = 0
        self.line = 1
        self.eof = False
        self.ordinal = 0

    def _raw(self) -> bytes:
        data = self.handle.read(_CHUNK)
        if self.digest is not None:
            self.digest.update(data)
        return data

    def _read(self, at_least: int = 0) -> bool:
        """Append at least `at_least` more bytes (or the rest); False at the end of the file."""
        if self.eof:
            return False
        first = self.offset == 0 and not self.buf
        data, wanted = b"", max(at_least, len(_BOM) if first else 1)
        while len(data) < wanted and (more := self._raw()):
            data += more
        got = len(data)
        self.eof = got < wanted
        if first and data.startswith(_BOM):
            data, self.offset = data[len(_BOM) :], len(_BOM)
        self.buf += self.text.decode(data, final=self.eof)
        return got > 0

    def _grow(self) -> bool:
        """Read as much again as the element read so far (amortised: no quadratic re-reads)."""
        return self._read(2 * (len(self.buf) - self.pos))

    def _advance(self, to: int) -> None:
        chunk = self.buf[self.pos : to]
        self.offset += len(chunk.encode("utf-8", "surrogateescape"))
        self.line += chunk.count("\n")
        self.pos = to

    def _peek(self) -> str:
        """The next non-whitespace character ("" at the end of the file)."""
        if self.pos >= _CHUNK:
            self.buf, self.pos = self.buf[self.pos :], 0
        while True:
            spaces = _SKIP_WS.match(self.buf, self.pos)
            self._advance(spaces.end() if spaces else self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._read():
                return ""

    def scan(self) -> Iterator[Scanned]:
        while (char := self._peek()) == "[":
            self._advance(self.pos + 1)
            yield from self._elements()
        if char:
            yield self._trailer()

    def _trailer(self) -> Scanned:
        """Whatever follows the last array: one reject, its length counted, not held."""
        self.ordinal += 1
        text = self.buf[self.pos :]
        length = len(text.encode("utf-8", "surrogateescape"))
        length += len(self.text.getstate()[0])
        while data := self._raw():
            length += len(data)
        problem = f"{length} bytes after the end of the JSON array, not an element of it"
        locator = Locator(self.offset, length, self.ordinal, self.line)
        return Scanned(locator, None, problem, _printable(text[:1000]))

    def _elements(self) -> Iterator[Scanned]:
        expect_element, broken = True, False
        while True:
            char = self._peek()
            if char == "]":
                self._advance(self.pos + 1)
                return
            if char == ",":
                self._advance(self.pos + 1)
                if expect_element:  # `[,` or `,,`
                    yield self._empty("an empty array element (two commas in a row)")
                expect_element = True
                continue
            if not char:
                if not broken:  # a cut inside an element was reported with it
                    yield self._empty(
                        "the file ends before its JSON array is closed (an export cut short?)"
                    )
                return
            element = self._element()
            yield element
            expect_element, broken = False, element.problem is not None

    def _empty(self, problem: str) -> Scanned:
        self.ordinal += 1
        return Scanned(Locator(self.offset, 0, self.ordinal, self.line), None, problem, "")

    def _element(self) -> Scanned:
        self.ordinal += 1
        start, offset, line = self.pos, self.offset, self.line
        value: Any = None
        problem: str | None = None
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, start)
                # A number or literal at the end of the buffer may go on in the next chunk.
                cut = end >= len(self.buf) - _NEAR_END and not isinstance(value, dict | list)
                if cut and self._grow():
                    continue
                break
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self.buf) - _NEAR_END
                if (near_end or exc.msg.startswith("Unterminated string")) and self._grow():
                    continue
                at = line + self.buf.count("\n", start, exc.pos)
                problem = f"not JSON ({exc.msg.removesuffix(' at')} at line {at})"
            except RecursionError:
                problem = _TOO_DEEP
            end = self._value_end(start)
            if self.eof and end >= len(self.buf):
                problem += "; the file ends inside it (an export cut short?)"
            break
        text = self.buf[start:end]
        try:
            length = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            length = len(text.encode("utf-8", "surrogateescape"))
            problem, value = "not UTF-8 text", None
        self._advance(end)
        locator = Locator(offset, length, self.ordinal, line)
        if problem is None and not isinstance(value, dict):
            problem = f"a JSON {type(value).__name__}, not a trace object"
        if problem is not None:
            return Scanned(locator, None, problem, _printable(text))
        return Scanned(locator, value, None, None)

    def _value_end(self, start: int) -> int:
        """Where the (broken) value at `start` ends, by strings, escapes and depth only."""
        depth, i = 0, start
        while True:
            found = _STRUCTURE.search(self.buf, i)
            if found is None:
                if not self._grow():
                    return len(self.buf)
                continue  # search again from `i` in the longer buffer
            char = found.group()
            if char == '"':
                close = self._string_end(found.end())
                if close is None:
                    if not self._grow():
                        return len(self.buf)
                    continue  # the same string again, with more text
                i = close
                if depth == 0:
                    return i
                continue
            i = found.end()
            if char in "{[":
                depth += 1
            elif char in "}]":
                if depth == 0:
                    return i - 1  # the array's own `]` ends a broken scalar
                depth -= 1
                if depth == 0:
                    return i
            elif depth == 0:  # a comma ends a broken scalar
                return i - 1

    def _string_end(self, i: int) -> int | None:
        """The index after the quote that closes a string whose text starts at `i`."""
        buf = self.buf
        while (close := buf.find('"', i)) >= 0:
            j = close - 1
            while j >= i and buf[j] == "\\":
                j -= 1
            if (close - 1 - j) % 2 == 0:  # not escaped
                return close + 1
            i = close + 1
        return None


def _printable(text: str) -> str:
    """Text for a dead letter: invalid UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ------------------------------------------------------------------------------------ previews


def is_preview(text: str) -> bool:
    """True when `text` ends where LangWatch's search preview cuts a longer value."""
    body = text[: -len(_ELLIPSIS)] if text.endswith(_ELLIPSIS) else text
    if len(body) * 4 < _CLAMP_BYTES - 3:
        return False  # cheap: too short to reach any cut, whatever its characters
    size = len(body.encode("utf-8", "surrogatepass"))
    if PREVIEW_BYTES - 3 <= size <= PREVIEW_BYTES:
        return True
    return body is not text and _CLAMP_BYTES - 3 <= size <= _CLAMP_BYTES
