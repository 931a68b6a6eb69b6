"""cronhook executor for Python: wire protocol v1, standard library only (3.11+).

The counterpart of the Rust ``cronhook-sdk`` crate, written to show that the protocol
(``docs/protocol.md``) does not depend on Rust. Subclass :class:`Executor`, override
:meth:`Executor.run`, and serve it::

    class Echo(Executor):
        def run(self, ctx):
            return json.dumps(ctx.payload)

    executor = Echo(secret="the-app-secret")
    base = executor.serve("127.0.0.1", 7171)   # dispatch URL: base + "/fires"
    ...
    executor.stop()

The library does everything around ``run``: it checks the HMAC signature of each
dispatch (401, the handler does not run), parses it (400 with the reason), answers 202
at once, runs the handler in a bounded thread pool (429 when the slots and the queue
are full), never runs a fire id twice, reports a timeout at the fire's deadline, turns
exceptions into failed results, and posts the signed result to the fire's
``callback_url`` with retries and exponential backoff.

Differences from the Rust SDK: results are kept in memory only (no durable outbox),
so a result not yet delivered when the process ends is lost; delivery is attempted a
bounded number of times; a handler that passes its deadline is reported as timed out,
but Python cannot stop its thread, so that thread keeps its pool slot until it returns.
"""

from __future__ import annotations

import email.message
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping

__all__ = [
    "ATTEMPT_HEADER",
    "DEFAULT_PREFIX",
    "Executor",
    "FIRE_HEADER",
    "FireContext",
    "HEARTBEAT_PATH",
    "Handler",
    "MAX_OUTPUT_BYTES",
    "SCHEDULED_HEADER",
    "SDK_VERSION",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_SECS",
    "SignatureError",
    "cap_output",
    "format_time",
    "parse_time",
    "sign",
    "sign_now",
    "truncate_output",
    "verify",
]

# --------------------------------------------------------------------------------------
# Wire protocol v1 constants (mirror sdk/src/protocol.rs)
# --------------------------------------------------------------------------------------

SDK_VERSION = "python-0.1.0"
FIRE_HEADER = "Cronhook-Fire"
SCHEDULED_HEADER = "Cronhook-Scheduled-At"
ATTEMPT_HEADER = "Cronhook-Attempt"
SIGNATURE_HEADER = "Cronhook-Signature"
SIGNATURE_TOLERANCE_SECS = 300
MAX_OUTPUT_BYTES = 64 * 1024
HEARTBEAT_PATH = "/api/v1/executors/heartbeat"
DEFAULT_PREFIX = "/cronhook"
FIRES_ROUTE = "/fires"
HEALTH_ROUTE = "/healthz"

log = logging.getLogger("cronhook_executor")


# --------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------


def _key(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _tag(secret: bytes | str, timestamp: int, body: bytes) -> bytes:
    message = str(int(timestamp)).encode("ascii") + b"." + bytes(body)
    return hmac.new(_key(secret), message, hashlib.sha256).digest()


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The ``Cronhook-Signature`` value for ``body`` signed at ``timestamp`` (unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    return f"t={int(timestamp)},v1={_tag(secret, timestamp, body).hex()}"


def sign_now(secret: bytes | str, body: bytes) -> str:
    return sign(secret, int(time.time()), body)


class SignatureError(Exception):
    """Why a signature was refused; ``kind`` is missing, malformed, stale or mismatch."""

    MESSAGES = {
        "missing": f"missing {SIGNATURE_HEADER} header",
        "malformed": f"malformed {SIGNATURE_HEADER} header (expected t=<unix seconds>,v1=<hex>)",
        "stale": f"signature timestamp is outside the {SIGNATURE_TOLERANCE_SECS} s tolerance",
        "mismatch": "signature does not match",
    }

    def __init__(self, kind: str):
        super().__init__(self.MESSAGES[kind])
        self.kind = kind


_INT = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def verify(
    secret: bytes | str | Iterable[bytes | str],
    header: str | None,
    body: bytes,
    now: int | None = None,
) -> None:
    """Checks a ``Cronhook-Signature`` value against the raw ``body``; raises
    :class:`SignatureError` unless one ``v1`` tag matches within the tolerance.

    ``secret`` may be a list of secrets (accepting several while rotating). Parsing is
    the Rust SDK's: comma-separated ``key=value`` parts, unknown keys ignored, every
    ``v1`` must be hex, exactly the tolerance of 300 s either way.
    """
    if header is None:
        raise SignatureError("missing")
    timestamp = None
    tags: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed")
        if key == "t":
            if not _INT.fullmatch(value):
                raise SignatureError("malformed")
            timestamp = int(value)
        elif key == "v1":
            # Several v1 tags may be present while a secret is being rotated.
            if not _HEX.fullmatch(value):
                raise SignatureError("malformed")
            tags.append(bytes.fromhex(value))
    if timestamp is None or not tags:
        raise SignatureError("malformed")
    now = int(time.time()) if now is None else int(now)
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECS:
        raise SignatureError("stale")
    secrets = [secret] if isinstance(secret, (bytes, bytearray, str)) else list(secret)
    for candidate in secrets:
        expected = _tag(candidate, timestamp, body)
        # compare_digest runs in constant time; check every tag, no early exit.
        matched = [hmac.compare_digest(expected, tag) for tag in tags]
        if any(matched):
            return
    raise SignatureError("mismatch")


# --------------------------------------------------------------------------------------
# Times and output limits
# --------------------------------------------------------------------------------------

_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})"
)


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 timestamp (any number of fraction digits, ``Z`` or an offset)."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected an RFC 3339 timestamp string, got {_kind(value)}")
    match = _TIME.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{field}: {value!r} is not an RFC 3339 timestamp")
    day, clock, fraction, offset = match.groups()
    fraction = ((fraction or "") + "000000")[:6]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{fraction}{offset}")
    except ValueError as e:
        raise ValueError(f"{field}: {value!r} is not a valid instant ({e})") from None
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds only when non-zero."""
    value = value.astimezone(timezone.utc)
    spec = "microseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def truncate_output(text: str) -> tuple[str, bool]:
    """What the scheduler stores: at most 64 KiB of UTF-8, cut on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_OUTPUT_BYTES:
        return text, False
    return raw[:MAX_OUTPUT_BYTES].decode("utf-8", errors="ignore"), True


def cap_output(text: str) -> str:
    """Cuts text far beyond what the scheduler stores, but keeps it just over 64 KiB so
    the scheduler still sees (and marks) that it was cut (as the Rust SDK does)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_OUTPUT_BYTES + 4:
        return text
    end = MAX_OUTPUT_BYTES + 1
    while end < len(raw) and (raw[end] & 0xC0) == 0x80:
        end += 1
    return raw[:end].decode("utf-8")


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------
# The dispatch as a handler sees it
# --------------------------------------------------------------------------------------


class FireContext:
    """One fire as :meth:`Executor.run` sees it."""

    def __init__(self, request: dict[str, Any], handler: str, cancel_event: threading.Event):
        self.request = request
        self.fire_id: str = request["fire_id"]
        self.job_id: str = request["job_id"]
        #: The job key, ``<group>/<name>``.
        self.job: str = request["job"]
        #: Name of the handler the dispatch asked for ("" when it named none).
        self.handler: str = handler
        #: 1 for the first attempt; a retry of the same scheduled instant counts up.
        self.attempt: int = request["attempt"]
        self.scheduled_at: datetime = request["scheduled_at"]
        self.fired_at: datetime = request["fired_at"]
        #: When the executor stops waiting and reports ``timeout``.
        self.deadline: datetime = request["deadline"]
        self.payload: Any = request["payload"]
        #: ``{"index": i, "total": n}`` for a broadcast fire, else None.
        self.shard: dict[str, int] | None = request.get("shard")
        self.callback_url: str = request["callback_url"]
        self._cancel = cancel_event
        #: A logger that prefixes every line with the fire id, job and attempt.
        self.log = _FireLogger(log, {"prefix": f"fire {self.fire_id} (job {self.job}, attempt {self.attempt})"})

    def time_left(self) -> float:
        """Seconds until the deadline (0 once it passed)."""
        return max(0.0, (self.deadline - _now()).total_seconds())

    def is_cancelled(self) -> bool:
        """True once the fire timed out, was cancelled by the scheduler, or the executor
        stopped; a long handler should check this (or :meth:`wait`) and return."""
        return self._cancel.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; returns True early if the fire was cancelled."""
        return self._cancel.wait(seconds)


class _FireLogger(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.extra['prefix']}: {msg}", kwargs


class _Headers:
    """Case-insensitive read access to a plain mapping of headers."""

    def __init__(self, headers: Mapping[str, str]):
        self._h = {str(k).lower(): v for k, v in headers.items()}

    def get(self, name: str, default: Any = None) -> Any:
        return self._h.get(name.lower(), default)


@dataclass
class _Fire:
    request: dict[str, Any]
    handler: str
    cancel: threading.Event
    phase: str = "queued"  # queued | running
    completed: bool = False
    started_at: datetime | None = None
    cancel_reason: str | None = None


class _BadRequest(Exception):
    pass


def _parse_dispatch(body: bytes) -> dict[str, Any]:
    """Parses and validates a dispatch body, naming the bad field."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _BadRequest(f"invalid dispatch body: not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise _BadRequest(f"invalid dispatch body: {e}") from None
    if not isinstance(data, dict):
        raise _BadRequest(f"invalid dispatch body: expected a JSON object, got {_kind(data)}")

    def required(name: str) -> Any:
        if name not in data:
            raise _BadRequest(f"invalid dispatch body: missing field `{name}`")
        return data[name]

    def uuid_field(name: str) -> str:
        value = required(name)
        if not isinstance(value, str):
            raise _BadRequest(f"invalid dispatch body: {name}: expected a UUID string, got {_kind(value)}")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise _BadRequest(f"invalid dispatch body: {name}: {value!r} is not a UUID") from None

    def time_field(name: str) -> datetime:
        try:
            return parse_time(required(name), name)
        except ValueError as e:
            raise _BadRequest(f"invalid dispatch body: {e}") from None

    request: dict[str, Any] = {
        "fire_id": uuid_field("fire_id"),
        "job_id": uuid_field("job_id"),
    }
    job = required("job")
    if not isinstance(job, str):
        raise _BadRequest(f"invalid dispatch body: job: expected a string, got {_kind(job)}")
    request["job"] = job
    handler = data.get("handler")
    if handler is not None and not isinstance(handler, str):
        raise _BadRequest(f"invalid dispatch body: handler: expected a string, got {_kind(handler)}")
    request["handler"] = handler
    attempt = required("attempt")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt <= 0xFFFFFFFF:
        raise _BadRequest(f"invalid dispatch body: attempt: expected an unsigned integer, got {attempt!r}")
    request["attempt"] = attempt
    for name in ("scheduled_at", "fired_at", "deadline"):
        request[name] = time_field(name)
    request["payload"] = data.get("payload")
    callback = required("callback_url")
    if not isinstance(callback, str):
        raise _BadRequest(f"invalid dispatch body: callback_url: expected a string, got {_kind(callback)}")
    request["callback_url"] = callback
    shard = data.get("shard")
    if shard is not None:
        if not (
            isinstance(shard, dict)
            and all(isinstance(shard.get(k), int) and not isinstance(shard.get(k), bool) for k in ("index", "total"))
        ):
            raise _BadRequest("invalid dispatch body: shard: expected {\"index\": <int>, \"total\": <int>}")
        shard = {"index": shard["index"], "total": shard["total"]}
    request["shard"] = shard
    return request


# --------------------------------------------------------------------------------------
# Write-back delivery
# --------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None  # a redirect is answered as its own status (retried)


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """POSTs ``body``; returns (status, answer bytes), raises OSError on transport errors."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read(64 * 1024)
    except urllib.error.HTTPError as e:
        try:
            detail = e.read(64 * 1024)
        except OSError:
            detail = b""
        finally:
            e.close()
        return e.code, detail


@dataclass
class _Pending:
    fire_id: str
    job: str
    callback_url: str
    result: dict[str, Any]
    attempts: int = 0
    delay: float = 0.0


class _Deliverer:
    """Posts results, signed, to their callback URL; retries with jittered exponential
    backoff. A timer thread keeps the retry schedule; a small pool makes the attempts."""

    FLUSH_RETRY = 0.2

    def __init__(self, executor: "Executor"):
        self.x = executor
        self.pool = ThreadPoolExecutor(
            max_workers=executor.delivery_concurrency, thread_name_prefix="cronhook-delivery"
        )
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, _Pending]] = []
        self.seq = itertools.count()
        self.pending = 0  # enqueued and not ended
        self.flushing = False
        self.closed = False
        self.thread = threading.Thread(target=self._timer, name="cronhook-delivery-timer", daemon=True)
        self.thread.start()

    def enqueue(self, entry: _Pending) -> None:
        with self.cond:
            self.pending += 1
            entry.delay = self.x.retry_initial
            self._submit(entry)

    def _submit(self, entry: _Pending) -> None:
        try:
            self.pool.submit(self._attempt, entry)
        except RuntimeError:  # pool shut down
            self._ended(entry, "the executor stopped before it was delivered")

    def _timer(self) -> None:
        with self.cond:
            while not self.closed:
                now = time.monotonic()
                while self.heap and self.heap[0][0] <= now:
                    _, _, entry = heapq.heappop(self.heap)
                    self._submit(entry)
                timeout = self.heap[0][0] - now if self.heap else None
                self.cond.wait(timeout)

    def _attempt(self, entry: _Pending) -> None:
        entry.attempts += 1
        # The fire id inside the signed body binds the result to its fire (no replay to another fire).
        body = _compact({"fire_id": entry.fire_id, **entry.result})
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_now(self.x.secret, body),
            FIRE_HEADER: entry.fire_id,
        }
        try:
            status, answer = _post(entry.callback_url, body, headers, self.x.request_timeout)
        except (OSError, ValueError) as e:  # ValueError: an unusable URL
            status, answer = None, str(e).encode()
        detail = answer.decode("utf-8", errors="replace")[:500]
        if status is not None and 200 <= status < 300:
            log.debug("fire %s: result delivered after %d attempt(s)", entry.fire_id, entry.attempts)
            self._ended(entry, None)
            return
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            log.error(
                "fire %s (job %s): the scheduler refused its %s result with %d (%s); giving up on this write-back",
                entry.fire_id, entry.job, entry.result["status"], status, detail,
            )
            self._ended(entry, f"refused with {status}")
            return
        reason = f"answer {status}: {detail}" if status is not None else detail
        with self.cond:
            if entry.attempts >= self.x.writeback_attempts or self.closed:
                log.error(
                    "fire %s (job %s): write-back to %s failed %d time(s) (last: %s); the result is dropped",
                    entry.fire_id, entry.job, entry.callback_url, entry.attempts, reason,
                )
                self._ended(entry, "gave up")
                return
            wait = self.FLUSH_RETRY if self.flushing else entry.delay * random.uniform(0.5, 1.0)
            entry.delay = min(entry.delay * 2, self.x.retry_max)
            log.warning(
                "fire %s: write-back attempt %d to %s failed (%s); retrying in %.2fs",
                entry.fire_id, entry.attempts, entry.callback_url, reason, wait,
            )
            heapq.heappush(self.heap, (time.monotonic() + wait, next(self.seq), entry))
            self.cond.notify_all()

    def _ended(self, entry: _Pending, failure: str | None) -> None:
        self.x._mark_delivered(entry.fire_id, failure)
        with self.cond:
            self.pending -= 1
            self.cond.notify_all()

    def flush(self, timeout: float) -> int:
        """Retries every waiting result now and often; returns how many are left."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.flushing = True
            # Every waiting retry is due now; later ones come every FLUSH_RETRY.
            now = time.monotonic()
            self.heap = [(now, seq, entry) for _, seq, entry in self.heap]
            heapq.heapify(self.heap)
            self.cond.notify_all()
            while self.pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            left_over = self.pending
            self.closed = True
            self.cond.notify_all()
        self.pool.shutdown(wait=False, cancel_futures=True)
        return left_over


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for idle keep-alive connections when closing.
    block_on_close = False


def _problem(status: int, detail: str, extra: Mapping[str, str] | None = None):
    titles = {
        400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
        411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
        500: "Internal Server Error", 503: "Service Unavailable",
    }
    body = _compact({"type": "about:blank", "title": titles.get(status, "Error"), "status": status, "detail": detail})
    headers = {"Content-Type": "application/problem+json"}
    headers.update(extra or {})
    return status, headers, body


def _json(status: int, value: Any):
    return status, {"Content-Type": "application/json"}, _compact(value)


def _busy(status: int, detail: str):
    return _problem(status, detail, {"Retry-After": "1"})


def _make_request_handler(executor: "Executor"):
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cronhook-python/" + SDK_VERSION.removeprefix("python-")
        timeout = 30  # idle keep-alive connections are closed after this

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, answer) -> None:
            status, headers, body = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_body(self):
            """The body, or an error answer; never more than max_body_bytes."""
            limit = executor.max_body_bytes
            too_large = _problem(413, f"dispatch body is larger than {limit} bytes")
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks, size = [], 0
                while True:
                    line = self.rfile.readline(1024)
                    try:
                        n = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        self.close_connection = True
                        return None, _problem(400, "could not read the body: bad chunk size")
                    if n == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks), None
                    size += n
                    if size > limit:
                        self.close_connection = True
                        return None, too_large
                    chunks.append(self.rfile.read(n))
                    self.rfile.readline(16)
            length = self.headers.get("Content-Length")
            if length is None:
                return b"", None
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                return None, _problem(400, f"bad Content-Length {length!r}")
            if n > limit:
                self.close_connection = True  # the unread body makes the connection unusable
                return None, too_large
            body = self.rfile.read(n)
            if len(body) != n:
                self.close_connection = True
                return None, _problem(400, "could not read the body: connection closed early")
            return body, None

        def _handle(self) -> None:
            try:
                if self.command == "POST":
                    body, error = self._read_body()
                    if error is not None:
                        if executor._draining and executor._route(self.path)[0] == "fires":
                            error = _busy(503, "the executor is shutting down")
                        self._send(error)
                        return
                else:
                    body = b""
                self._send(executor.handle(self.command, self.path, self.headers, body))
            except Exception:  # never let one request take the server down
                log.exception("request %s %s failed", self.command, self.path)
                self.close_connection = True
                try:
                    self._send(_problem(500, "the executor could not handle the request; see its log"))
                except OSError:
                    pass

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return RequestHandler


# --------------------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------------------


class Executor:
    """Receives fires, runs :meth:`run` for each, writes the results back.

    Subclass it and override :meth:`run`. Then either :meth:`serve` it on its own
    listener, or call :meth:`handle` from another web framework.

    ``handlers``: names this executor answers to; a dispatch naming another handler
    gets 404. ``None`` (the default) accepts any name (see ``ctx.handler``).
    ``scheduler_url`` + ``app``: enables heartbeats to ``scheduler_url + HEARTBEAT_PATH``.
    """

    def __init__(
        self,
        secret: bytes | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        capacity: int = 4,
        queue_len: int = 16,
        handlers: Iterable[str] | None = None,
        scheduler_url: str | None = None,
        app: str = "python",
        instance_id: str | None = None,
        advertise_address: str | None = None,
        heartbeat_interval: float = 3.0,
        max_body_bytes: int = 1024 * 1024,
        recent_fires: int = 10_000,
        writeback_attempts: int = 10,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        request_timeout: float = 10.0,
        delivery_concurrency: int = 4,
        shutdown_grace: float = 30.0,
        flush_timeout: float = 5.0,
        extra_secrets: Iterable[bytes | str] = (),
    ):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if queue_len < 0:
            raise ValueError("queue_len must not be negative")
        if writeback_attempts < 1:
            raise ValueError("writeback_attempts must be at least 1")
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.secret = _key(secret)
        # Accepted on incoming requests too (rotation); results are signed with `secret`.
        self._accepted_secrets = [self.secret] + [_key(s) for s in extra_secrets]
        self.prefix = prefix
        self.capacity = capacity
        self.queue_len = queue_len
        self.handlers = None if handlers is None else sorted(set(handlers))
        self.scheduler_url = scheduler_url.rstrip("/") if scheduler_url else None
        self.app = app
        self.instance_id = instance_id or str(uuid.uuid4())
        self.advertise_address = advertise_address
        self.heartbeat_interval = heartbeat_interval
        self.max_body_bytes = max_body_bytes
        self.recent_fires = recent_fires
        self.writeback_attempts = writeback_attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.request_timeout = request_timeout
        self.delivery_concurrency = delivery_concurrency
        self.shutdown_grace = shutdown_grace
        self.flush_timeout = flush_timeout

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._active: dict[str, _Fire] = {}
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._occupied = 0  # admitted fires whose pool task has not returned
        self._running = 0  # threads inside run(), overrunning ones included
        self._draining = False
        self._stopped = threading.Event()
        self._stop_report: dict[str, Any] | None = None
        self._counters = dict.fromkeys(
            ("accepted", "rejected_busy", "succeeded", "failed", "delivered", "delivery_failures"), 0
        )
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="cronhook-handler")
        self._deliverer = _Deliverer(self)
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()

    # ---- what a user overrides --------------------------------------------------------

    def run(self, ctx: FireContext) -> str | None:
        """The business step. Return the output (``str``; ``None`` for no output; any
        other value is sent as its JSON text) or raise to fail the fire with the
        exception's message. Runs on a pool thread."""
        raise NotImplementedError("subclass Executor and override run(self, ctx)")

    # ---- serving ----------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listens on ``host:port`` (0 = any free port) in a background thread and
        returns the base URL ``http://<host>:<port><prefix>``; dispatch to ``…/fires``.
        Starts heartbeats if a scheduler URL was given."""
        if self._draining:
            raise RuntimeError("the executor is shutting down")
        if self._server is not None:
            raise RuntimeError("already serving")
        self._server = _Server((host, port), _make_request_handler(self))
        bound_host, bound_port = self._server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self._address = f"http://{shown}:{bound_port}{self.prefix}"
        if self.advertise_address is None:
            self.advertise_address = self._address
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="cronhook-http", daemon=True,
        )
        self._server_thread.start()
        self.start_heartbeats()
        return self._address

    @property
    def address(self) -> str | None:
        """The base URL of :meth:`serve`'s listener (prefix included), once serving."""
        return getattr(self, "_address", None)

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    def start_heartbeats(self) -> None:
        """Starts the heartbeat thread (when mounted elsewhere: after setting
        ``advertise_address``). No-op without a scheduler URL or if already started."""
        if not self.scheduler_url or self._heartbeat_thread is not None:
            return
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="cronhook-heartbeat", daemon=True)
        self._heartbeat_thread.start()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes):
        """Answers one request to the executor's routes: returns ``(status, headers,
        body_bytes)``. Usable from any web framework (``headers`` lookups must be
        case-insensitive, like ``email.message.Message`` or a WSGI adapter)."""
        if not isinstance(headers, email.message.Message):
            headers = _Headers(headers)
        route, fire_id = self._route(path)
        if route is None:
            return _problem(404, f"no route for {method} {path.split('?', 1)[0]}")
        allowed = "POST" if route == "fires" else "GET"
        if method.upper() not in (allowed, "HEAD" if allowed == "GET" else allowed):
            return _problem(405, f"{path.split('?', 1)[0]} accepts {allowed} only", {"Allow": allowed})
        if route == "fires":
            return self._dispatch(headers, body)
        if route == "health":
            return self._health()
        return self._fire_status(headers, fire_id)

    def _route(self, path: str) -> tuple[str | None, str | None]:
        path = path.split("?", 1)[0]
        if not path.startswith(self.prefix + "/"):
            return None, None
        rest = path[len(self.prefix):]
        if rest == FIRES_ROUTE:
            return "fires", None
        if rest == HEALTH_ROUTE:
            return "health", None
        if rest.startswith(FIRES_ROUTE + "/") and "/" not in rest[len(FIRES_ROUTE) + 1:]:
            return "status", rest[len(FIRES_ROUTE) + 1:]
        return None, None

    # ---- routes -----------------------------------------------------------------------

    def _verify(self, headers: Mapping[str, str], body: bytes):
        try:
            verify(self._accepted_secrets, headers.get(SIGNATURE_HEADER), body)
        except SignatureError as e:
            return _problem(401, str(e))
        return None

    def _dispatch(self, headers: Mapping[str, str], body: bytes):
        if self._draining:
            return _busy(503, "the executor is shutting down")
        if len(body) > self.max_body_bytes:
            return _problem(413, f"dispatch body is larger than {self.max_body_bytes} bytes")
        refused = self._verify(headers, body)
        if refused is not None:
            return refused
        try:
            request = _parse_dispatch(body)
        except _BadRequest as e:
            return _problem(400, str(e))
        fire_id = request["fire_id"]
        header = headers.get(FIRE_HEADER)
        if header is not None:
            try:
                same = str(uuid.UUID(header.strip())) == fire_id
            except ValueError:
                same = False
            if not same:
                return _problem(400, f"{FIRE_HEADER} header does not match the body's fire_id {fire_id}")
        handler = request["handler"] or ""
        if self.handlers is not None and handler and handler not in self.handlers:
            names = ", ".join(self.handlers) or "none"
            return _problem(404, f"no handler named {handler!r} in app {self.app!r} (handlers: {names})")
        admission = self._admit(request, handler)
        if admission in ("accepted", "duplicate"):
            return _json(202, {"fire_id": fire_id, "status": admission})
        if admission == "busy":
            return _busy(429, f"all {self.capacity} slots are busy and the queue of {self.queue_len} is full")
        return _busy(503, "the executor is shutting down")

    def _health(self):
        stats = self.stats()
        draining = self._draining
        body = {
            "status": "draining" if draining else "ok",
            "running": stats["running"],
            "queued": stats["queued"],
            "capacity": self.capacity,
        }
        return _json(503 if draining else 200, body)

    def _fire_status(self, headers: Mapping[str, str], fire_id: str | None):
        refused = self._verify(headers, b"")
        if refused is not None:
            return refused
        try:
            fire_id = str(uuid.UUID(fire_id or ""))
        except ValueError:
            return _problem(400, f"{fire_id!r} is not a fire id (uuid)")
        with self._lock:
            fire = self._active.get(fire_id)
            if fire is not None:
                return _json(200, {"fire_id": fire_id, "state": fire.phase, "delivered": False})
            done = self._finished.get(fire_id)
            if done is None:
                return _problem(404, f"fire {fire_id} is not known to this executor")
            result = dict(done["result"])
            if done["delivered"]:
                result.pop("output", None)  # outputs are only kept until delivered
            return _json(200, {"fire_id": fire_id, "state": "finished", "result": result, "delivered": done["delivered"]})

    # ---- admission and running --------------------------------------------------------

    def _admit(self, request: dict[str, Any], handler: str) -> str:
        fire_id = request["fire_id"]
        with self._lock:
            if self._draining:
                return "draining"
            if fire_id in self._active or fire_id in self._finished:
                return "duplicate"
            # Free slots count as queue room: the pool starts fires at once.
            if self._occupied >= self.capacity + self.queue_len:
                self._counters["rejected_busy"] += 1
                return "busy"
            fire = _Fire(request=request, handler=handler, cancel=threading.Event())
            self._active[fire_id] = fire
            self._occupied += 1
            self._counters["accepted"] += 1
        try:
            self._pool.submit(self._work, fire)
        except RuntimeError:  # the pool shut down in between
            with self._lock:
                self._occupied -= 1
            self._complete(fire, self._failed("not started: the executor shut down before a slot was free", None))
        return "accepted"

    def _work(self, fire: _Fire) -> None:
        with self._lock:
            if fire.completed:  # cancelled while it waited
                self._occupied -= 1
                self._changed.notify_all()
                return
            fire.phase = "running"
            fire.started_at = _now()
            self._running += 1
        started = fire.started_at
        deadline = fire.request["deadline"]
        timer = None
        try:
            remaining = (deadline - started).total_seconds()
            if remaining <= 0:
                fire.cancel.set()
                result = self._failed(
                    f"timeout: the fire's deadline {format_time(deadline)} passed before the handler started", None
                )
            else:
                timer = threading.Timer(remaining, self._deadline_passed, (fire,))
                timer.daemon = True
                timer.start()
                ctx = FireContext(fire.request, fire.handler, fire.cancel)
                try:
                    output = self.run(ctx)
                    result = self._succeeded(output, started)
                except BaseException as e:  # noqa: BLE001 - every failure becomes a result
                    message = str(e) or type(e).__name__
                    result = self._failed(message, started)
                    log.debug("fire %s: handler raised %r", fire.request["fire_id"], e)
            self._complete(fire, result)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._running -= 1
                self._occupied -= 1
                self._changed.notify_all()

    def _deadline_passed(self, fire: _Fire) -> None:
        fire.cancel.set()
        deadline = format_time(fire.request["deadline"])
        if self._complete(fire, self._failed(f"timeout: the handler did not finish by the fire's deadline {deadline}", fire.started_at)):
            log.warning(
                "fire %s (job %s): timed out; its thread keeps running until the handler returns",
                fire.request["fire_id"], fire.request["job"],
            )

    @staticmethod
    def _succeeded(output: Any, started: datetime) -> dict[str, Any]:
        if output is not None and not isinstance(output, str):
            if isinstance(output, (bytes, bytearray)):
                output = bytes(output).decode("utf-8", errors="replace")
            else:
                output = json.dumps(output, separators=(",", ":"), ensure_ascii=False, default=str)
        result: dict[str, Any] = {"status": "succeeded"}
        if output is not None:
            result["output"] = cap_output(output)
        result["started_at"] = format_time(started)
        result["finished_at"] = format_time(_now())
        return result

    @staticmethod
    def _failed(error: str, started: datetime | None) -> dict[str, Any]:
        result: dict[str, Any] = {"status": "failed", "error": cap_output(error)}
        if started is not None:
            result["started_at"] = format_time(started)
        result["finished_at"] = format_time(_now())
        return result

    def _complete(self, fire: _Fire, result: dict[str, Any]) -> bool:
        """Records a fire's result once and hands it to delivery; False if it had one."""
        fire_id = fire.request["fire_id"]
        with self._lock:
            if fire.completed:
                return False
            fire.completed = True
            self._active.pop(fire_id, None)
            self._finished[fire_id] = {"result": result, "delivered": False}
            self._finished.move_to_end(fire_id)
            while len(self._finished) > self.recent_fires:
                self._finished.popitem(last=False)
            self._counters[result["status"]] += 1
            self._changed.notify_all()
        log.debug("fire %s (job %s): %s%s", fire_id, fire.request["job"], result["status"],
                  f": {result['error']}" if "error" in result else "")
        self._deliverer.enqueue(_Pending(fire_id, fire.request["job"], fire.request["callback_url"], result))
        return True

    def _mark_delivered(self, fire_id: str, failure: str | None) -> None:
        with self._lock:
            done = self._finished.get(fire_id)
            if done is not None:
                done["delivered"] = True
                # Outputs are kept only until delivery (as in the Rust SDK's table).
                done["result"] = {k: v for k, v in done["result"].items() if k != "output"}
            self._counters["delivery_failures" if failure else "delivered"] += 1
            self._changed.notify_all()

    def cancel(self, fire_ids: Iterable[str], reason: str = "cancelled") -> int:
        """Cancels fires this instance knows: a queued one never starts, a running one
        is reported failed with ``reason`` at once and its ``ctx.is_cancelled()`` turns
        True (Python cannot stop the thread). Returns how many were cancelled."""
        cancelled = 0
        for raw in fire_ids:
            try:
                fire_id = str(uuid.UUID(str(raw)))
            except ValueError:
                continue
            with self._lock:
                fire = self._active.get(fire_id)
            if fire is None:
                continue
            fire.cancel.set()
            if self._complete(fire, self._failed(reason, fire.started_at)):
                cancelled += 1
                log.info("fire %s: cancelled (%s)", fire_id, reason)
        return cancelled

    # ---- heartbeats -------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        url = f"{self.scheduler_url}{HEARTBEAT_PATH}"
        period = self.heartbeat_interval
        failing_since = None
        last_warn = None
        cpu = _CpuSampler()
        while not self._heartbeat_stop.is_set():
            address = self.advertise_address or self.address
            if address:
                stats = self.stats()
                used, total = _memory()
                beat = {
                    "app": self.app,
                    "instance_id": self.instance_id,
                    "address": address,
                    "handlers": self.handlers or [],
                    "capacity": self.capacity,
                    "running": stats["running"],
                    "queued": stats["queued"],
                    "cpu_percent": cpu.sample(),
                    "mem_used_bytes": used,
                    "mem_total_bytes": total,
                    "load1": _load1(),
                    "sdk_version": SDK_VERSION,
                }
                body = _compact(beat)
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_now(self.secret, body)}
                try:
                    status, answer = _post(url, body, headers, self.request_timeout)
                    if not 200 <= status < 300:
                        raise OSError(f"answer {status}: {answer.decode('utf-8', 'replace')[:300]}")
                    reply = json.loads(answer.decode("utf-8"))
                    if not isinstance(reply, dict):
                        raise ValueError("reply is not a JSON object")
                    if failing_since is not None:
                        log.info("heartbeats to %s work again after %ds", url, time.monotonic() - failing_since)
                    failing_since = last_warn = None
                    ms = reply.get("heartbeat_ms") or 0
                    if isinstance(ms, (int, float)) and ms > 0:
                        period = min(max(ms / 1000.0, 0.1), 600.0)
                    cancel = reply.get("cancel") or []
                    if isinstance(cancel, list) and cancel:
                        self.cancel(cancel, "cancelled")
                except (OSError, ValueError) as e:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if last_warn is None or now - last_warn >= 60:
                        last_warn = now
                        log.warning("heartbeat to %s failed for %ds: %s; fires keep running", url, now - failing_since, e)
                    else:
                        log.debug("heartbeat to %s failed: %s", url, e)
            self._heartbeat_stop.wait(period)

    # ---- stats and stopping -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self._counters)
            out.update(
                running=self._running,
                queued=max(0, self._occupied - self._running),
                capacity=self.capacity,
                outbox_depth=self._deliverer.pending,
            )
            return out

    def stop(self, grace: float | None = None, flush_timeout: float | None = None) -> dict[str, Any]:
        """Graceful stop: new dispatches get 503 from now on, queued fires are reported
        failed (not started), running handlers get ``grace`` seconds and are then
        reported cancelled, pending results get ``flush_timeout`` seconds to be
        delivered, then the listener closes. Calling it again returns the same report."""
        grace = self.shutdown_grace if grace is None else grace
        flush_timeout = self.flush_timeout if flush_timeout is None else flush_timeout
        with self._lock:
            first = not self._draining
            self._draining = True
            waiting = [f for f in self._active.values() if f.phase == "queued"] if first else []
        if not first:
            self._stopped.wait()
            return dict(self._stop_report or {})
        for fire in waiting:
            fire.cancel.set()
            self._complete(fire, self._failed("not started: the executor shut down before a slot was free", None))
        end = time.monotonic() + grace
        with self._lock:
            while any(f.phase == "running" for f in self._active.values()):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            still = list(self._active.values())
        cancelled = self.cancel(
            [f.request["fire_id"] for f in still], "cancelled: the executor shut down before the handler finished"
        )
        if cancelled:
            log.warning("%d handler(s) still running after the %.1fs grace period were reported cancelled", cancelled, grace)
        self._heartbeat_stop.set()
        undelivered = self._deliverer.flush(flush_timeout)
        if undelivered:
            log.warning("%d result(s) could not be delivered before the executor stopped; they are lost", undelivered)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._stop_report = {
            "finished_in_grace": cancelled == 0,
            "cancelled": cancelled,
            "not_started": len(waiting),
            "undelivered": undelivered,
        }
        self._stopped.set()
        return dict(self._stop_report)

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


#: The template-method base class under its other name.
Handler = Executor


# --------------------------------------------------------------------------------------
# Host load for heartbeats (best effort; zeros where /proc is missing)
# --------------------------------------------------------------------------------------


class _CpuSampler:
    def __init__(self) -> None:
        self.last = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def sample(self) -> float:
        now = self._read()
        before, self.last = self.last, now
        if not now or not before or now[0] <= before[0]:
            return 0.0
        total, idle = now[0] - before[0], now[1] - before[1]
        return round(100.0 * (total - idle) / total, 1)


def _memory() -> tuple[int, int]:
    try:
        values = {}
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                values[name] = int(rest.split()[0]) * 1024
        total = values.get("MemTotal", 0)
        return total - values.get("MemAvailable", total), total
    except (OSError, ValueError, IndexError):
        return 0, 0


def _load1() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0
