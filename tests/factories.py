"""Deterministic, realistic LangWatch and Opik data for end-to-end tests and benchmarks.

LangWatch traces come in the read shape of `GET /api/traces/{id}` (13-digit epoch-ms timestamps,
typed span input/output, evaluations, custom metadata values as strings). Opik records come in the
write shape of the batch endpoints (`Trace_Write`, `Span_Write`, feedback scores) with UUID v7 ids
anchored at each record's start time and absent fields omitted, never null.

Everything is drawn from the `random.Random` passed in, so one seed always gives the same data; the
project generators stream one trace at a time and keep only per-thread bookkeeping in memory.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["EVALUATION_STATUSES", "SPAN_KINDS", "langwatch_project", "langwatch_trace"]
__all__ += ["opik_project", "opik_trace", "uuid7"]

Json = dict[str, Any]
OpikRecords = tuple[Json, list[Json], list[Json], dict[str, list[Json]]]

EVALUATION_STATUSES = ("processed", "skipped", "error", "scheduled", "in_progress")
_CONTAINERS = ("agent", "chain", "span", "workflow")
SPAN_KINDS = ("llm", "tool", "rag", "guardrail", *_CONTAINERS)
_KIND_WEIGHTS = (6, 3, 1.5, 1, 1, 1, 0.6, 0.4)
_LEAF_MS = {"llm": (350, 6500), "tool": (15, 900), "rag": (60, 700), "guardrail": (20, 350)}
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Evaluation statuses handed out in turn: `processed` is the commonest, and all appear.
_STATUS_CYCLE: tuple[str, ...] = ("processed", "processed", "skipped", "error", "processed")
_STATUS_CYCLE += ("scheduled", "in_progress")
_BIG_INPUT_BYTES = 80_000
_APOLOGY = "Sorry, something went wrong on our side. Please try again in a moment."
_MODELS = (  # (model, vendor or None, $ per prompt token, $ per completion token)
    ("openai/gpt-5", None, 1.25e-6, 1e-5),
    ("openai/gpt-4o-mini", "openai", 1.5e-7, 6e-7),
    ("anthropic/claude-sonnet-4-5", None, 3e-6, 1.5e-5),
    ("gpt-4.1-mini", "azure", 4e-7, 1.6e-6),
)
_NAMES = {
    "agent": ("support_agent", "ReAct agent", "planner"),
    "chain": ("RetrievalQA", "answer_chain", "condense_question"),
    "workflow": ("handle_message", "chat_workflow"),
    "span": ("postprocess", "format_response", "load_session"),
    "rag": ("vector_search", "retrieve_documents"),
    "guardrail": ("PII guard", "jailbreak_detector", "Moderation"),
    "llm": ("ChatOpenAI", "generate_answer", "chat.completions.create"),
}
_FAILURES = {  # span kind -> (exception type, message)
    "llm": (
        ("openai.APITimeoutError", "Request to /v1/chat/completions timed out after 30s"),
        ("openai.RateLimitError", "Error code: 429 - Rate limit reached for gpt-4o-mini (TPM)"),
    ),
    "tool": (
        ("httpx.HTTPStatusError", "Server error '503 Service Unavailable' for '/api/v2/orders'"),
        ("KeyError", "'shipping_address'"),
    ),
}
_EVALUATORS = (  # (evaluator type, evaluation name, what a processed result carries)
    ("ragas/faithfulness", "Faithfulness", "score"),
    ("ragas/response_relevancy", "Answer Relevancy", "score"),
    ("openai/moderation", "Moderation", "passed"),
    ("presidio/pii_detection", "PII Detection", "passed"),
    ("langevals/llm_category", "Conversation topic", "label"),
)
_LOG_LINES = (
    "INFO  gateway  request completed status=200 latency_ms=184",
    "WARN  billing  retrying charge capture attempt=2 psp=adyen",
    "ERROR orders   upstream timeout after 30000ms path=/api/v2/orders",
    "DEBUG cache    miss key=kb:wifi:014 ttl=3600 région=eu-west-1 ✓",
)

# Conversation domains, one "== name" section each: a system prompt, `turn ‖ question ‖ answer`,
# `tool ‖ name ‖ JSON arguments ‖ JSON result` and `doc ‖ id ‖ text` lines. An indented line
# continues the previous one; a literal \n is a line break.
_DOMAIN_TEXT = r"""
== support
system ‖ You are Nova, the support assistant of Brightline Telecom. Answer briefly, cite the
  knowledge base and never promise refunds above €50 without escalating.
turn ‖ My fibre connection drops every evening around 8pm, what can I do?
  ‖ Evening drops usually mean Wi-Fi congestion, not the fibre line: your line shows no errors
  in the last 7 days. Switch the router to 5 GHz (Settings → Wi-Fi → Band).
turn ‖ I was charged twice for March, order #A-20931.
  ‖ You're right, there are two charges of €39.99 on 3 March. I opened refund RF-88213 for the
  duplicate; it reaches your card in 3–5 business days.
turn ‖ the app keeps saying 'session expired' 😤
  ‖ Sorry about that! It happens when the phone clock drifts. Update to 6.2.1 and sign in
  again — that fixes it for almost everyone 🙏
tool ‖ lookup_order ‖ {"order_id": "A-20931"} ‖ {"status": "paid", "amount_eur": 39.99}
tool ‖ check_line_status ‖ {"line_id": "FTTH-55102"} ‖ {"sync": "up", "errors_7d": 0}
tool ‖ create_refund ‖ {"order_id": "A-20931", "amount": 39.99} ‖ {"refund_id": "RF-88213"}
doc ‖ kb-wifi-014 ‖ Evening drop-outs are usually Wi-Fi congestion on the 2.4 GHz band.
doc ‖ kb-billing-003 ‖ Duplicate charges are refunded within 3–5 business days.
doc ‖ kb-app-022 ‖ 'Session expired' loops are fixed in app 6.2.1 and later.
== coding
system ‖ You are a senior Python engineer pairing with the user. Prefer small, typed, tested
  changes and show code in fenced blocks.
turn ‖ Why does `asyncio.gather` swallow my exception?
  ‖ It doesn't swallow it: with `return_exceptions=True` it returns the exception as a result.
  Drop that flag, or check `isinstance(r, BaseException)` on each result.
turn ‖ Write a pytest fixture that gives each test a temporary SQLite DB
  ‖ ```python\n@pytest.fixture\ndef db(tmp_path):\n    conn = sqlite3.connect(tmp_path /
  "test.db")\n    yield conn\n    conn.close()\n```
turn ‖ mypy says `Item "None" of "Optional[str]" has no attribute "strip"`
  ‖ Narrow it first: `if name is not None: name = name.strip()`, or default the parameter
  to `""` so it is never None.
tool ‖ run_python ‖ {"code": "import sys; print(sys.version)"} ‖ {"stdout": "3.12.4\n"}
tool ‖ search_docs ‖ {"query": "asyncio.gather return_exceptions"} ‖ {"hits": 3}
doc ‖ docs.python.org/asyncio-task ‖ gather(*aws, return_exceptions=False) runs awaitables
  concurrently; the first raised exception propagates to the caller.
doc ‖ docs.pytest.org/fixtures ‖ Tests request fixtures by naming them as arguments.
== travel
system ‖ You are a multilingual travel assistant. Always answer in the user's language.
turn ‖ 東京から京都まで新幹線で何分かかりますか？
  ‖ のぞみ号で約2時間15分です。🚄 指定席は早めの予約がおすすめです。
turn ‖ هل يمكنني إلغاء حجز الفندق مجانًا؟ ‖ نعم، يمكنك الإلغاء مجانًا حتى 48 ساعة قبل موعد الوصول. ✅
turn ‖ 上海浦东机场到市中心最快的交通方式是什么？
  ‖ 最快的是磁悬浮列车，约8分钟到龙阳路站，然后换乘地铁2号线。🚅
turn ‖ ¿Necesito visado para viajar a Brasil con pasaporte español? 🇪🇸
  ‖ No, con pasaporte español puedes entrar sin visado hasta 90 días por turismo. 🇧🇷
tool ‖ get_train_times ‖ {"from": "東京", "to": "京都"} ‖ {"duration_min": 135}
tool ‖ convert_currency ‖ {"amount": 100, "from": "EUR", "to": "JPY"} ‖ {"result": 16210}
doc ‖ travel-jp-007 ‖ 東海道新幹線のぞみ：東京–京都 約2時間15分。
doc ‖ travel-br-002 ‖ Ciudadanos de la UE: exención de visado de 90 días en Brasil.
"""


def _parse_domains(text: str) -> tuple[Json, ...]:
    """The domains of `_DOMAIN_TEXT`, each {"system", "turns", "tools", "docs"}."""
    domains: list[Json] = []
    for line in text.replace("\n  ", " ").strip().splitlines():
        if line.startswith("== "):
            domains.append({"system": "", "turns": [], "tools": [], "docs": []})
            continue
        key, *parts = (part.strip() for part in line.split("‖"))
        if key == "tool":
            domains[-1]["tools"].append((parts[0], json.loads(parts[1]), json.loads(parts[2])))
            continue
        parts = [part.replace("\\n", "\n") for part in parts]
        if key == "system":
            domains[-1]["system"] = parts[0]
        else:
            domains[-1][f"{key}s"].append(tuple(parts))
    return tuple(domains)


_DOMAINS = _parse_domains(_DOMAIN_TEXT)


def uuid7(ms: int, rng: random.Random) -> str:
    """A UUID version 7 whose 48-bit time field is `ms`, variant 0b10, other bits from `rng`."""
    raw = bytearray(ms.to_bytes(6, "big") + rng.getrandbits(80).to_bytes(10, "big"))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def _nanoid(rng: random.Random, size: int = 21) -> str:
    return "".join(rng.choices(_ID_ALPHABET, k=size))


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ms(value: datetime) -> int:
    return (value.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def _tokens(value: object) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // 4)


@dataclass(frozen=True)
class _Turn:
    """What one trace is about: its domain, the user's question and the final answer."""

    rng: random.Random
    domain: Json
    question: str
    answer: str
    history: int  # how many earlier turns are replayed to the model
    failed: bool  # the turn ends in an error: the app answers with an apology

    @property
    def final_answer(self) -> str:
        return _APOLOGY if self.failed else self.answer

    @classmethod
    def draw(
        cls, rng: random.Random, thread_id: str | None, failed: bool, big_input_bytes: int = 0
    ) -> _Turn:
        """Turns of one thread share a domain, picked from the thread id."""
        pick = random.Random(thread_id) if thread_id is not None else rng
        domain = _DOMAINS[pick.randrange(len(_DOMAINS))]
        question, answer = rng.choice(domain["turns"])
        if big_input_bytes:
            question = _big_text(rng, "What went wrong in this log?", big_input_bytes)
        return cls(rng, domain, question, answer, rng.randint(1, 3) if thread_id else 0, failed)


def _big_text(rng: random.Random, prefix: str, size: int) -> str:
    """`prefix` followed by a pasted log until the text is at least `size` UTF-8 bytes."""
    lines, total, i = [prefix, "", "```log"], len(prefix.encode()), 0
    while total < size:
        stamp = f"2026-03-14T09:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randrange(1000):03d}Z"
        lines.append(f"{stamp} {rng.choice(_LOG_LINES)}")
        total, i = total + len(lines[-1].encode()) + 1, i + 1
    return "\n".join([*lines, "```"])


def _layout(
    rng: random.Random, n: int, start_ms: int
) -> tuple[list[str], list[int | None], list[int], list[int]]:
    """A random tree of `n` spans: kind, parent index, start ms and end ms of each.

    Span 0 is the root and parents come before their children. Children run one after another
    inside their parent: they start after it starts and finish before it finishes.
    """
    kinds, containers = ["llm" if n == 1 else rng.choice(_CONTAINERS)], [0]
    parents: list[int | None] = [None]
    for i in range(1, n):
        kinds.append(rng.choices(SPAN_KINDS, weights=_KIND_WEIGHTS)[0])
        parents.append(containers[-1] if rng.random() < 0.6 else rng.choice(containers))
        if kinds[i] in _CONTAINERS:
            containers.append(i)
    head = [rng.randint(1, 25) for _ in range(n)]
    gap = [rng.randint(0, 12) for _ in range(n)]
    dur = [0] * n
    for i in range(n - 1, -1, -1):  # children first, so a container's duration covers them
        if kinds[i] in _CONTAINERS:
            dur[i] += head[i] + rng.randint(1, 30)
        else:
            dur[i] = rng.randint(*_LEAF_MS[kinds[i]])
        if (parent := parents[i]) is not None:
            dur[parent] += dur[i] + gap[i]
    starts, ends, cursor = [0] * n, [0] * n, [0] * n
    for i, parent in enumerate(parents):
        starts[i] = start_ms if parent is None else cursor[parent]
        ends[i], cursor[i] = starts[i] + dur[i], starts[i] + head[i]
        if parent is not None:
            cursor[parent] = ends[i] + gap[i]
    return kinds, parents, starts, ends


def _span_count(rng: random.Random, n_spans: int | None) -> int:
    return n_spans if n_spans is not None else rng.choice((1, 1, 2, 3, 3, 4, 5, 6, 8, 11))


def _failing_span(rng: random.Random, kinds: list[str]) -> int:
    """The span that raised: a non-root tool or llm span when there is one, else the root."""
    leaves = [i for i, kind in enumerate(kinds) if i and kind in ("tool", "llm")]
    return rng.choice(leaves) if leaves else 0


def _chat(turn: _Turn, answer: str) -> tuple[list[Json], Json]:
    """Messages in and out of one model call; some answer with a tool call or follow one."""
    rng, domain = turn.rng, turn.domain
    messages: list[Json] = [{"role": "system", "content": domain["system"]}]
    earlier = [pair for pair in domain["turns"] if pair[0] != turn.question]
    for past_q, past_a in rng.sample(earlier, min(turn.history, len(earlier))):
        messages += [{"role": "user", "content": past_q}, {"role": "assistant", "content": past_a}]
    messages.append({"role": "user", "content": turn.question})
    roll = rng.random()
    if roll > 0.45:
        return messages, {"role": "assistant", "content": answer}
    name, args, result = rng.choice(domain["tools"])
    arguments = json.dumps(args, ensure_ascii=False)
    call: Json = {"id": f"call_{_nanoid(rng, 24)}", "type": "function"}
    call["function"] = {"name": name, "arguments": arguments}
    asked = {"role": "assistant", "content": None, "tool_calls": [call]}
    if roll < 0.2:
        return messages, asked
    replied = {"role": "tool", "tool_call_id": call["id"], "name": name}
    replied["content"] = json.dumps(result, ensure_ascii=False)
    return [*messages, asked, replied], {"role": "assistant", "content": answer}


def _span_body(turn: _Turn, kind: str, is_root: bool, start: int, end: int) -> Json:
    """The kind-specific fields of a LangWatch span: name, typed input/output, model, metrics."""
    rng = turn.rng
    answer = turn.final_answer if is_root else turn.answer
    body: Json = {"name": rng.choice(_NAMES.get(kind, ("step",)))}
    if kind == "llm":
        model, vendor, price_in, price_out = rng.choice(_MODELS)
        messages, reply = _chat(turn, answer)
        prompt, completion = _tokens(messages), _tokens(reply)
        cost = round(prompt * price_in + completion * price_out, 8)
        body["name"] = body["name"] if rng.random() < 0.8 else None
        body["model"] = model
        if vendor:
            body["vendor"] = vendor
        body["input"] = {"type": "chat_messages", "value": messages}
        body["output"] = {"type": "chat_messages", "value": [reply]}
        body["metrics"] = {"prompt_tokens": prompt, "completion_tokens": completion, "cost": cost}
        body["params"] = {"temperature": rng.choice((0, 0.2, 0.7, 1)), "stream": rng.random() < 0.6}
        if body["params"]["stream"]:
            body["first_token_at"] = start + rng.randint(1, max(1, min(end - start - 1, 1800)))
    elif kind == "tool":
        body["name"], args, result = rng.choice(turn.domain["tools"])
        body["input"] = {"type": "json", "value": args}
        body["output"] = {"type": "json", "value": result}
    elif kind == "rag":
        docs = rng.sample(turn.domain["docs"], rng.randint(1, len(turn.domain["docs"])))
        body["input"] = {"type": "text", "value": turn.question}
        body["contexts"] = [
            {"document_id": doc, "chunk_id": f"{doc}#{rng.randrange(40)}", "content": text}
            for doc, text in docs
        ]
        hits = [{"document_id": doc, "score": round(rng.uniform(0.55, 0.95), 4)} for doc, _ in docs]
        body["output"] = {"type": "json", "value": hits}
    elif kind == "guardrail":
        passed = rng.random() < 0.85
        details = "No PII or policy violations found" if passed else "Detected EMAIL_ADDRESS"
        verdict = {"status": "processed", "passed": passed, "score": round(rng.random(), 3)}
        body["input"] = {"type": "text", "value": turn.question}
        body["output"] = {"type": "guardrail_result", "value": {**verdict, "details": details}}
    else:
        body["input"] = {"type": "text", "value": turn.question}
        if not is_root:
            body["input"] = {"type": "json", "value": {"query": turn.question, "locale": "en-GB"}}
        body["output"] = {"type": "text", "value": answer}
    return body


def _evaluation(rng: random.Random, status: str, after_ms: int, span_ids: list[str]) -> Json:
    """One LangWatch evaluation in `status`, scheduled after the trace ended."""
    etype, name, verdict = rng.choice(_EVALUATORS)
    times = {"inserted_at": after_ms + rng.randint(500, 4000)}
    ev: Json = {"evaluation_id": f"check_{_nanoid(rng)}"}
    ev["evaluator_id"] = f"evaluator_{_nanoid(random.Random(etype))}"
    ev.update(name=name, type=etype, status=status, timestamps=times)
    if etype == "openai/moderation":
        ev["is_guardrail"] = True
    if rng.random() < 0.3:
        ev["span_id"] = rng.choice(span_ids)
    if status != "scheduled":
        times["started_at"] = times["inserted_at"] + rng.randint(100, 20_000)
        if status != "in_progress":
            times["finished_at"] = times["started_at"] + rng.randint(300, 9000)
    if status == "processed" and verdict == "score":
        ev["score"] = round(rng.uniform(0.2, 1.0), 4)
        ev["details"] = "3 of 4 claims in the answer are supported by the retrieved contexts"
    elif status == "processed" and verdict == "passed":
        ev["passed"] = rng.random() < 0.8
    elif status == "processed":
        ev["label"] = rng.choice(("billing", "technical_issue", "account", "travel_planning"))
    elif status == "skipped":
        ev["details"] = rng.choice(("No contexts were retrieved", "Trace has no output"))
    elif status == "error":
        message = rng.choice(("fetch failed", "Evaluator timed out after 60s"))
        stack = [f"Error: {message}", "    at runEvaluation (evaluations/worker.ts:212:11)"]
        ev["error"] = {"has_error": True, "message": message, "stacktrace": rng.choice(([], stack))}
    return ev


def langwatch_trace(
    rng: random.Random,
    *,
    trace_id: str,
    started_at_ms: int,
    thread_id: str | None,
    project_id: str = "project_test",
    n_spans: int | None = None,
    big_input_bytes: int = 0,
    with_error: bool = False,
    orphan: bool = False,
    evaluation_statuses: Sequence[str] = (),
) -> Json:
    """One LangWatch trace as `GET /api/traces/{id}` returns it.

    `n_spans` defaults to a random 1–11; `big_input_bytes` makes the user input at least that many
    UTF-8 bytes; `with_error` makes one span (and so the trace) fail; `orphan` gives one non-root
    span a `parent_id` that matches no span; one evaluation per entry of `evaluation_statuses`.
    """
    turn = _Turn.draw(rng, thread_id, with_error, big_input_bytes)
    n = max(_span_count(rng, n_spans), 2 if orphan else 1)
    kinds, parents, starts, ends = _layout(rng, n, started_at_ms)
    ids = [f"span_{_nanoid(rng)}" for _ in range(n)]
    failing = _failing_span(rng, kinds) if with_error else None
    spans: list[Json] = []
    for i, (kind, parent) in enumerate(zip(kinds, parents, strict=True)):
        span: Json = {"span_id": ids[i], "trace_id": trace_id, "type": kind}
        span["parent_id"] = None if parent is None else ids[parent]
        body = _span_body(turn, kind, i == 0, starts[i], ends[i])
        span["timestamps"] = {"started_at": starts[i], "finished_at": ends[i]}
        if "first_token_at" in body:
            span["timestamps"]["first_token_at"] = body.pop("first_token_at")
        span.update(body, error=None)
        if i == failing:
            exc, message = rng.choice(_FAILURES.get(kind, _FAILURES["tool"]))
            where = f'  File "/app/bot/{kind}.py", line {rng.randint(20, 400)}, in handle'
            stack = ["Traceback (most recent call last):", where, f"{exc}: {message}"]
            span.update(output=None, error={"has_error": True, "message": message})
            span["error"]["stacktrace"] = stack
        spans.append(span)
    if orphan:
        rng.choice(spans[1:])["parent_id"] = f"span_{_nanoid(rng)}"
    llms = [span for span in spans if span["type"] == "llm"]
    firsts = [
        s["timestamps"]["first_token_at"] for s in llms if "first_token_at" in s["timestamps"]
    ]
    evaluations = [_evaluation(rng, status, ends[0], ids) for status in evaluation_statuses]
    inserted = ends[0] + rng.randint(800, 6000)
    updated = max([inserted] + [t for ev in evaluations for t in ev["timestamps"].values()])
    labels = rng.sample(("production", "web", "mobile", "beta", "vip"), rng.randint(0, 2))
    metadata: Json = {"user_id": f"user_{rng.randint(10_000, 99_999)}", "customer_id": "acme-eu"}
    metadata.update(labels=labels, sdk_version="0.2.14", sdk_language="python")
    metadata.update(environment="production", app_version=rng.choice(("6.2.0", "6.2.1")))
    metadata.update(ab_bucket=str(rng.randrange(10)), is_premium=rng.choice(("true", "false")))
    metadata["feature_flags"] = json.dumps(["new_retriever"] if rng.random() < 0.5 else [])
    if thread_id is not None:
        metadata["thread_id"] = thread_id
    metrics: Json = {"first_token_ms": min(firsts) - started_at_ms if firsts else None}
    metrics["total_time_ms"] = ends[0] - started_at_ms
    for key, source in (("prompt_tokens",) * 2, ("completion_tokens",) * 2, ("total_cost", "cost")):
        metrics[key] = round(sum(s["metrics"][source] for s in llms), 8) if llms else None
    metrics["tokens_estimated"] = False
    return {
        "trace_id": trace_id,
        "project_id": project_id,
        "metadata": metadata,
        "timestamps": {"started_at": started_at_ms, "inserted_at": inserted, "updated_at": updated},
        "input": {"value": turn.question},
        "output": None if failing == 0 else {"value": turn.final_answer},
        "metrics": metrics,
        "error": None if failing is None else spans[failing]["error"],
        "spans": spans,
        "evaluations": evaluations,
    }


def _plan(rng: random.Random, n_traces: int, n_threads: int) -> Iterator[int | None]:
    """For each trace in time order, the index of its thread, or None for a standalone trace.

    About 20% of traces are standalone; every thread gets at least one turn, long conversations
    are rarer than short ones, and at most 16 threads are active at any time.
    """
    threaded = 0 if n_threads <= 0 else max(n_traces - n_traces // 5, min(n_threads, n_traces))
    n_threads = min(n_threads, threaded)
    turns = [1] * n_threads
    for _ in range(threaded - n_threads):
        turns[int(n_threads * rng.random() ** 2)] += 1
    standalone, next_thread, active = n_traces - threaded, 0, list[int]()
    for i in range(n_traces):
        if standalone and rng.random() * (n_traces - i) < standalone:
            standalone -= 1
            yield None
            continue
        while len(active) < 16 and next_thread < n_threads:
            active.append(next_thread)
            next_thread += 1
        thread = rng.choice(active)
        turns[thread] -= 1
        if not turns[thread]:
            active.remove(thread)
        yield thread


def langwatch_project(
    n_traces: int,
    n_threads: int,
    *,
    seed: int = 0,
    start_ms: int,
    project_id: str = "project_test",
    huge_trace_spans: int = 0,
    big_input_every: int = 0,
    spans_per_trace: int | None = None,
) -> Iterator[Json]:
    """Stream `n_traces` LangWatch traces in start-time order, spread over `n_threads` threads.

    About 20% are standalone (no `thread_id`); the middle trace has `huge_trace_spans` spans if
    > 0; every `big_input_every`-th trace has an input over 64 KB; every 11th trace fails, every
    29th has an orphan span, and evaluation statuses cycle so that every status appears. Traces
    have 1–11 spans (4.4 on average), or `spans_per_trace` each when given.
    """
    rng = random.Random(seed)
    thread_ids = [f"thread_{_nanoid(rng, 16)}" for _ in range(n_threads)]
    now, cycle = start_ms, 0
    for i, thread in enumerate(_plan(rng, n_traces, n_threads)):
        now += rng.randint(2_000, 45_000)
        n_evals = rng.choice((0, 1, 1, 2, 3))
        statuses = [_STATUS_CYCLE[(cycle + j) % len(_STATUS_CYCLE)] for j in range(n_evals)]
        cycle += n_evals
        big = bool(big_input_every) and (i + 1) % big_input_every == 0
        yield langwatch_trace(
            rng,
            trace_id=f"trace_{_nanoid(rng)}",
            started_at_ms=now,
            thread_id=None if thread is None else thread_ids[thread],
            project_id=project_id,
            n_spans=(
                huge_trace_spans if huge_trace_spans and i == n_traces // 2 else spans_per_trace
            ),
            big_input_bytes=_BIG_INPUT_BYTES if big else 0,
            with_error=i % 11 == 5,
            orphan=i % 29 == 13,
            evaluation_statuses=statuses,
        )


def _opik_span(lw: Json, kind: str) -> Json:
    """The input/output/metadata/model/usage of an Opik span, from a LangWatch span body."""
    value_in, value_out = lw["input"]["value"], lw["output"]["value"]
    if kind == "llm":
        usage = {key: lw["metrics"][key] for key in ("prompt_tokens", "completion_tokens")}
        usage["total_tokens"] = sum(usage.values())
        choice = {"index": 0, "message": value_out[0], "finish_reason": "stop"}
        return {
            "input": {"messages": value_in},
            "output": {"choices": [choice]},
            "metadata": {"created_from": "openai", **lw["params"]},
            "model": lw["model"].split("/")[-1],
            "provider": lw.get("vendor") or lw["model"].split("/")[0],
            "usage": usage,
            "total_estimated_cost": lw["metrics"]["cost"],
        }
    if kind == "guardrail":
        check = {"type": "PII", "passed": value_out["passed"], "details": value_out["details"]}
        result = {"guardrail_result": "passed" if check["passed"] else "failed"}
        return {"input": {"input": value_in}, "output": {**result, "validations": [check]}}
    if kind == "rag":
        docs = lw["contexts"]
        meta = {"retriever": "pgvector", "top_k": len(docs)}
        return {"input": {"query": value_in}, "output": {"documents": docs}, "metadata": meta}
    span = {"input": value_in if isinstance(value_in, dict) else {"input": value_in}}
    span["output"] = value_out if isinstance(value_out, dict) else {"output": value_out}
    if kind != "tool":
        span["metadata"] = {"framework": "langchain", "run_type": kind}
    return span


def _opik_error(rng: random.Random, where: str) -> dict[str, str]:
    exc, message = rng.choice(_FAILURES.get(where, _FAILURES["tool"]))
    frame = f'  File "/app/bot/{where}.py", line {rng.randint(20, 400)}, in {where}'
    traceback = f"Traceback (most recent call last):\n{frame}\n{exc}: {message}"
    return {"exception_type": exc, "message": message, "traceback": traceback}


def opik_trace(
    rng: random.Random,
    *,
    trace_id: str,
    start: datetime,
    thread_id: str | None,
    project_name: str,
    n_spans: int | None = None,
    with_error: bool = False,
) -> OpikRecords:
    """One Opik trace in the write shape: (trace, spans, trace scores, span scores by span id).

    `trace_id` should be a UUID v7 whose time field is `start`; span ids are UUID v7 anchored at
    each span's start. Optional fields that have no value are omitted.
    """
    start_ms = _ms(start)
    turn = _Turn.draw(rng, thread_id, with_error)
    kinds, parents, starts, ends = _layout(rng, _span_count(rng, n_spans), start_ms)
    ids = [uuid7(ms, rng) for ms in starts]
    failing = _failing_span(rng, kinds) if with_error else None
    spans: list[Json] = []
    span_scores: dict[str, list[Json]] = {}
    for i, (kind, parent) in enumerate(zip(kinds, parents, strict=True)):
        lw = _span_body(turn, kind, i == 0, starts[i], ends[i])
        span: Json = {"id": ids[i], "project_name": project_name, "trace_id": trace_id}
        if parent is not None:
            span["parent_span_id"] = ids[parent]
        span["name"] = lw["name"] or "chat.completions.create"
        span["type"] = kind if kind in ("llm", "tool", "guardrail") else "general"
        span.update(start_time=_iso(starts[i]), end_time=_iso(ends[i]), **_opik_span(lw, kind))
        if "first_token_at" in lw:
            span["ttft"] = lw["first_token_at"] - starts[i]
        if rng.random() < 0.2:
            span["tags"] = ["production"]
        if i == failing:
            span["error_info"] = _opik_error(rng, kind)
            del span["output"]
        if kind == "llm" and rng.random() < 0.3:
            score = {"name": "answer_relevance", "value": round(rng.uniform(0.3, 1), 4)}
            span_scores[ids[i]] = [{**score, "source": "sdk"}]
        spans.append(span)
    user_input: Json = {"messages": [{"role": "user", "content": turn.question}]}
    if rng.random() < 0.5:
        user_input = {"prompt": turn.question}
    trace: Json = {"id": trace_id, "project_name": project_name, "name": "chat_turn"}
    trace.update(start_time=_iso(start_ms), end_time=_iso(ends[0]), input=user_input)
    if failing != 0:
        trace["output"] = {"output": turn.final_answer}
    trace["metadata"] = {"environment": "production", "app_version": "6.2.1"}
    trace["metadata"].update(ab_bucket=rng.randrange(10), is_premium=rng.random() < 0.3)
    trace["tags"] = rng.sample(("production", "web", "mobile", "beta"), rng.randint(1, 2))
    if thread_id is not None:
        trace["thread_id"] = thread_id
    if failing is not None:
        trace["error_info"] = spans[failing]["error_info"]
    scores: list[Json] = []
    if rng.random() < 0.5:
        value = round(rng.uniform(0, 0.4), 4)
        reason = "The answer is grounded in the retrieved context."
        scores.append({"name": "hallucination", "value": value, "source": "sdk", "reason": reason})
    if rng.random() < 0.4:
        happy = rng.random() < 0.8
        feedback = {"name": "user_feedback", "value": int(happy), "source": "sdk"}
        scores.append({**feedback, "category_name": "👍" if happy else "👎"})
    return trace, spans, scores, span_scores


def opik_project(
    n_traces: int,
    n_threads: int,
    *,
    seed: int = 0,
    start: datetime,
    project_name: str,
    huge_trace_spans: int = 0,
    spans_per_trace: int | None = None,
) -> Iterator[OpikRecords]:
    """Stream `n_traces` Opik traces (each as `opik_trace` returns it) over `n_threads` threads.

    About 20% are standalone, the middle trace has `huge_trace_spans` spans if > 0, every 11th
    trace fails. Thread ids are UUID4 strings, as Opik SDK users typically pick. Traces have
    `opik_trace`'s default number of spans, or `spans_per_trace` each when given.
    """
    rng = random.Random(seed)
    thread_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_threads)]
    now = _ms(start)
    for i, thread in enumerate(_plan(rng, n_traces, n_threads)):
        now += rng.randint(2_000, 45_000)
        yield opik_trace(
            rng,
            trace_id=uuid7(now, rng),
            start=_EPOCH + timedelta(milliseconds=now),
            thread_id=None if thread is None else thread_ids[thread],
            project_name=project_name,
            n_spans=(
                huge_trace_spans if huge_trace_spans and i == n_traces // 2 else spans_per_trace
            ),
            with_error=i % 11 == 5,
        )
