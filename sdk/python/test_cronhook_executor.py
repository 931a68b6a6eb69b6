"""Tests for the Python cronhook executor, over real HTTP on 127.0.0.1.

Run from the repository root:  python3 -m unittest discover -s sdk/python
Standard library only. Every wait is bounded (PATIENCE).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cronhook_executor as ce  # noqa: E402

if not os.environ.get("CRONHOOK_TEST_LOGS"):
    # The tests provoke timeouts, retries and refusals on purpose; keep their logs quiet.
    logging.getLogger("cronhook_executor").setLevel(logging.CRITICAL)

SECRET = b"test-secret-0123456789"
PATIENCE = 15.0  # seconds; generous for a loaded 2-core machine
HERE = os.path.dirname(os.path.abspath(__file__))

# The vector shared with the Rust unit test in sdk/src/protocol.rs and docs/protocol.md.
RUST_VECTOR_SECRET = b"secret"
RUST_VECTOR_T = 1_700_000_000
RUST_VECTOR_BODY = b'{"a":1}'
RUST_VECTOR_HEX = "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
WRITEBACK_FIELDS = {"fire_id", "status", "output", "error", "started_at", "finished_at"}


class Receiver:
    """A stand-in scheduler: write-back and heartbeat endpoints, signature checked."""

    def __init__(self, secret: bytes = SECRET):
        self.secret = secret
        self.cond = threading.Condition()
        self.results: list[tuple[str, dict, bool]] = []  # (fire id, body, signature ok)
        self.attempts: dict[str, int] = {}
        self.heartbeats: list[tuple[dict, bool]] = []
        self.answers: list[int] = []  # statuses to answer first; then 200
        self.cancel: list[str] = []
        receiver = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    ce.verify(receiver.secret, self.headers.get(ce.SIGNATURE_HEADER), body)
                    ok = True
                except ce.SignatureError:
                    ok = False
                m = re.fullmatch(r"/api/v1/fires/([0-9a-f-]+)/result", self.path)
                if m:
                    fire_id = m.group(1)
                    with receiver.cond:
                        receiver.attempts[fire_id] = receiver.attempts.get(fire_id, 0) + 1
                        status = receiver.answers.pop(0) if receiver.answers else 200
                        if status == 200:
                            receiver.results.append((fire_id, json.loads(body), ok))
                        receiver.cond.notify_all()
                    self._answer(status, {"fire_id": fire_id, "accepted": status == 200, "repeat": False})
                elif self.path == ce.HEARTBEAT_PATH:
                    with receiver.cond:
                        receiver.heartbeats.append((json.loads(body), ok))
                        cancel, receiver.cancel = receiver.cancel, []
                        receiver.cond.notify_all()
                    self._answer(200, {"heartbeat_ms": 100, "cancel": cancel})
                else:
                    self._answer(404, {"detail": "no route"})

            def _answer(self, status, value):
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def callback_url(self, fire_id: str) -> str:
        return f"{self.base}/api/v1/fires/{fire_id}/result"

    def wait_result(self, fire_id: str, timeout: float = PATIENCE) -> tuple[dict, bool]:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for fid, body, ok in self.results:
                    if fid == fire_id:
                        return body, ok
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no write-back for fire {fire_id} within {timeout}s")
                self.cond.wait(left)

    def wait_for(self, what: str, predicate, timeout: float = PATIENCE):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                # Poll too: some predicates look at the executor, which does not notify us.
                self.cond.wait(min(left, 0.05))

    def result_count(self, fire_id: str) -> int:
        with self.cond:
            return sum(1 for fid, _, _ in self.results if fid == fire_id)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_fire(receiver: Receiver, payload=None, *, deadline_s: float = 30.0, handler=None, fire_id=None) -> dict:
    now = datetime.now(timezone.utc)
    fire_id = fire_id or str(uuid.uuid4())
    fire = {
        "fire_id": fire_id,
        "job_id": str(uuid.uuid4()),
        "job": "tests/python",
        "attempt": 1,
        "scheduled_at": now.isoformat().replace("+00:00", "Z"),
        "fired_at": now.isoformat().replace("+00:00", "Z"),
        "deadline": (now + timedelta(seconds=deadline_s)).isoformat().replace("+00:00", "Z"),
        "payload": payload,
        "callback_url": receiver.callback_url(fire_id),
    }
    if handler is not None:
        fire["handler"] = handler
    return fire


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """One HTTP request; returns (status, headers, parsed JSON or raw bytes)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=PATIENCE)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return response.status, response.headers, parsed
    finally:
        conn.close()


def dispatch(base: str, fire: dict, *, secret: bytes = SECRET, signature: str | None = None, extra: dict | None = None):
    body = json.dumps(fire).encode()
    headers = {
        "Content-Type": "application/json",
        ce.FIRE_HEADER: fire.get("fire_id", ""),
        ce.ATTEMPT_HEADER: "1",
        ce.SIGNATURE_HEADER: signature if signature is not None else ce.sign_now(secret, body),
    }
    headers.update(extra or {})
    return request(base + "/fires", "POST", body, headers)


class Recording(ce.Executor):
    """Test executor: counts runs per fire id; behaviour from the payload."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runs: dict[str, int] = {}
        self.runs_lock = threading.Lock()
        self.release = threading.Event()
        self.started = threading.Event()

    def run(self, ctx):
        with self.runs_lock:
            self.runs[ctx.fire_id] = self.runs.get(ctx.fire_id, 0) + 1
        self.started.set()
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        if payload.get("block"):
            if not self.release.wait(PATIENCE):
                raise RuntimeError("never released")
        if "sleep" in payload:
            time.sleep(payload["sleep"])
        if "fail" in payload:
            raise ValueError(payload["fail"])
        return json.dumps({"echo": ctx.payload, "attempt": ctx.attempt, "handler": ctx.handler})

    def run_count(self, fire_id: str) -> int:
        with self.runs_lock:
            return self.runs.get(fire_id, 0)


class SignatureTests(unittest.TestCase):
    def test_matches_the_rust_sdk_vector(self):
        header = ce.sign(RUST_VECTOR_SECRET, RUST_VECTOR_T, RUST_VECTOR_BODY)
        self.assertEqual(header, f"t={RUST_VECTOR_T},v1={RUST_VECTOR_HEX}")
        # The same cases as the Rust unit test signature_round_trips_and_rejects_tampering.
        ce.verify(b"secret", header, b'{"a":1}', now=1_700_000_010)
        for secret, body, now, kind in [
            (b"secret", b'{"a":2}', 1_700_000_010, "mismatch"),
            (b"other", b'{"a":1}', 1_700_000_010, "mismatch"),
            (b"secret", b'{"a":1}', 1_700_000_000 + 301, "stale"),
            (b"secret", b'{"a":1}', 1_700_000_000 - 301, "stale"),
        ]:
            with self.assertRaises(ce.SignatureError) as caught:
                ce.verify(secret, header, body, now=now)
            self.assertEqual(caught.exception.kind, kind)
        ce.verify(b"secret", header, b'{"a":1}', now=1_700_000_300)  # the edge is inside
        with self.assertRaises(ce.SignatureError) as caught:
            ce.verify(b"secret", None, b"", now=0)
        self.assertEqual(caught.exception.kind, "missing")
        for bad in ["v1=zz", "", "t=1700000000", "t=abc,v1=00", "t=1700000000,v1=0", "garbage"]:
            with self.assertRaises(ce.SignatureError) as caught:
                ce.verify(b"secret", bad, b"", now=1_700_000_000)
            self.assertEqual(caught.exception.kind, "malformed", bad)

    def test_several_v1_tags_during_rotation(self):
        body = b'{"a":1}'
        old = ce.sign(b"old-secret", RUST_VECTOR_T, body)
        new = ce.sign(b"new-secret", RUST_VECTOR_T, body)
        both = f"{new},v1={old.split('v1=')[1]}"
        self.assertEqual(both.count("v1="), 2)
        ce.verify(b"old-secret", both, body, now=RUST_VECTOR_T)
        ce.verify(b"new-secret", both, body, now=RUST_VECTOR_T)
        # A receiver may also accept several secrets.
        ce.verify([b"other", b"old-secret"], old, body, now=RUST_VECTOR_T)
        with self.assertRaises(ce.SignatureError):
            ce.verify(b"third", both, body, now=RUST_VECTOR_T)
        # Spaces around parts and unknown keys are tolerated, like the Rust parser.
        ce.verify(b"old-secret", f" {old.replace(',', ' , ')} ,v0=ignored".replace(" , ", ", "), body, now=RUST_VECTOR_T)

    def test_output_cap_keeps_just_over_the_stored_limit(self):
        long = "é" * ce.MAX_OUTPUT_BYTES
        capped = ce.cap_output(long)
        self.assertTrue(ce.MAX_OUTPUT_BYTES < len(capped.encode()) <= ce.MAX_OUTPUT_BYTES + 4)
        short = "x" * ce.MAX_OUTPUT_BYTES
        self.assertEqual(ce.cap_output(short), short)
        stored, truncated = ce.truncate_output(capped)
        self.assertTrue(truncated)
        self.assertLessEqual(len(stored.encode()), ce.MAX_OUTPUT_BYTES)

    def test_times_parse_like_chrono_writes_them(self):
        for text in ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.123456789Z", "2024-05-01T14:00:00+02:00"]:
            self.assertEqual(ce.parse_time(text, "t").replace(microsecond=0), datetime(2024, 5, 1, 12, tzinfo=timezone.utc))
        with self.assertRaises(ValueError):
            ce.parse_time("2024-05-01 noon", "t")
        self.assertEqual(ce.format_time(datetime(2024, 5, 1, 12, tzinfo=timezone.utc)), "2024-05-01T12:00:00Z")


class ExecutorTests(unittest.TestCase):
    def setUp(self):
        self.receiver = Receiver()
        self.executors: list[ce.Executor] = []

    def tearDown(self):
        for executor in self.executors:
            executor.release.set()
            executor.stop(grace=2, flush_timeout=1)
        self.receiver.close()

    def start(self, **kwargs) -> tuple[Recording, str]:
        kwargs.setdefault("retry_initial", 0.05)
        kwargs.setdefault("retry_max", 0.2)
        executor = Recording(SECRET, **kwargs)
        self.executors.append(executor)
        return executor, executor.serve("127.0.0.1", 0)

    def test_signed_dispatch_is_acknowledged_and_written_back_signed(self):
        executor, base = self.start()
        self.assertRegex(base, r"^http://127\.0\.0\.1:\d+/cronhook$")
        fire = make_fire(self.receiver, {"x": 1, "s": "é"}, handler="echo")
        status, headers, body = dispatch(base, fire)
        self.assertEqual(status, 202)
        self.assertEqual(body, {"fire_id": fire["fire_id"], "status": "accepted"})
        result, signature_ok = self.receiver.wait_result(fire["fire_id"])
        self.assertTrue(signature_ok, "the write-back must be signed with the app secret")
        self.assertEqual(result["status"], "succeeded")
        self.assertEqual(json.loads(result["output"]), {"echo": {"x": 1, "s": "é"}, "attempt": 1, "handler": "echo"})
        self.assertNotIn("error", result)
        self.assertLessEqual(set(result), WRITEBACK_FIELDS, "the scheduler refuses unknown fields")
        self.assertEqual(result["fire_id"], fire["fire_id"], "the signed body binds the result to its fire")
        self.assertLessEqual(ce.parse_time(result["started_at"], "s"), ce.parse_time(result["finished_at"], "f"))
        self.assertEqual(executor.run_count(fire["fire_id"]), 1)
        self.receiver.wait_for("delivery to be counted", lambda: executor.stats()["delivered"] == 1)

    def test_bad_or_missing_signature_is_refused_and_nothing_runs(self):
        executor, base = self.start()
        fire = make_fire(self.receiver, {"x": 1})
        cases = {
            "wrong secret": dispatch(base, fire, secret=b"not-the-secret"),
            "missing": request(base + "/fires", "POST", json.dumps(fire).encode(), {"Content-Type": "application/json"}),
            "stale": dispatch(base, fire, signature=ce.sign(SECRET, int(time.time()) - 301, json.dumps(fire).encode())),
            "malformed": dispatch(base, fire, signature="v1=zz"),
        }
        for name, (status, headers, body) in cases.items():
            with self.subTest(name):
                self.assertEqual(status, 401)
                self.assertEqual(headers["Content-Type"], "application/problem+json")
                self.assertEqual(body["status"], 401)
                self.assertTrue(body["detail"])
        # Signed over other bytes than those sent: refused too.
        body_bytes = json.dumps(fire).encode()
        status, _, _ = request(base + "/fires", "POST", body_bytes + b" ", {ce.SIGNATURE_HEADER: ce.sign_now(SECRET, body_bytes)})
        self.assertEqual(status, 401)
        time.sleep(0.3)
        self.assertEqual(executor.run_count(fire["fire_id"]), 0)
        self.assertEqual(self.receiver.result_count(fire["fire_id"]), 0)
        self.assertEqual(executor.stats()["accepted"], 0)

    def test_duplicate_fire_id_runs_once(self):
        executor, base = self.start()
        fire = make_fire(self.receiver, {"block": True})
        self.assertEqual(dispatch(base, fire)[2]["status"], "accepted")
        self.assertTrue(executor.started.wait(PATIENCE))
        status, _, body = dispatch(base, fire)  # while it runs
        self.assertEqual((status, body["status"]), (202, "duplicate"))
        executor.release.set()
        self.receiver.wait_result(fire["fire_id"])
        status, _, body = dispatch(base, fire)  # after it finished
        self.assertEqual((status, body["status"]), (202, "duplicate"))
        time.sleep(0.3)
        self.assertEqual(executor.run_count(fire["fire_id"]), 1)
        self.assertEqual(self.receiver.result_count(fire["fire_id"]), 1)

    def test_exception_becomes_a_failed_result_with_its_message(self):
        executor, base = self.start()
        fire = make_fire(self.receiver, {"fail": "the ledger is closed"})
        self.assertEqual(dispatch(base, fire)[0], 202)
        result, ok = self.receiver.wait_result(fire["fire_id"])
        self.assertTrue(ok)
        self.assertEqual(result["status"], "failed")
        self.assertEqual(result["error"], "the ledger is closed")
        self.assertNotIn("output", result)
        self.assertIn("started_at", result)

    def test_full_capacity_and_queue_answer_429(self):
        executor, base = self.start(capacity=1, queue_len=1)
        first = make_fire(self.receiver, {"block": True})
        queued = make_fire(self.receiver, {"x": "queued"})
        refused = make_fire(self.receiver, {"x": "refused"})
        self.assertEqual(dispatch(base, first)[0], 202)
        self.assertTrue(executor.started.wait(PATIENCE))
        self.assertEqual(dispatch(base, queued)[0], 202)
        status, headers, body = dispatch(base, refused)
        self.assertEqual(status, 429)
        self.assertEqual(headers["Retry-After"], "1")
        self.assertEqual(headers["Content-Type"], "application/problem+json")
        self.assertIn("busy", body["detail"])
        self.assertEqual(request(base + "/healthz")[2], {"status": "ok", "running": 1, "queued": 1, "capacity": 1})
        executor.release.set()
        self.receiver.wait_result(first["fire_id"])
        self.receiver.wait_result(queued["fire_id"])
        self.assertEqual(executor.run_count(refused["fire_id"]), 0)
        # Room again: the refused fire id was never taken, so it is accepted now.
        self.assertEqual(dispatch(base, refused)[2]["status"], "accepted")
        self.receiver.wait_result(refused["fire_id"])
        self.assertEqual(executor.stats()["rejected_busy"], 1)

    def test_deadline_reports_a_timeout(self):
        executor, base = self.start()
        fire = make_fire(self.receiver, {"sleep": 1.5}, deadline_s=0.3)
        self.assertEqual(dispatch(base, fire)[0], 202)
        result, _ = self.receiver.wait_result(fire["fire_id"])
        self.assertEqual(result["status"], "failed")
        self.assertTrue(result["error"].startswith("timeout"), result["error"])
        # A fire whose deadline passed before it started never runs.
        late = make_fire(self.receiver, {"x": 1}, deadline_s=-1)
        self.assertEqual(dispatch(base, late)[0], 202)
        result, _ = self.receiver.wait_result(late["fire_id"])
        self.assertTrue(result["error"].startswith("timeout"), result["error"])
        self.assertEqual(executor.run_count(late["fire_id"]), 0)

    def test_malformed_dispatches_get_400_with_the_reason(self):
        executor, base = self.start()
        good = make_fire(self.receiver, {"x": 1})
        cases = {
            "not json": (b"{nope", "invalid dispatch body"),
            "missing field": (json.dumps({k: v for k, v in good.items() if k != "deadline"}).encode(), "deadline"),
            "bad uuid": (json.dumps(dict(good, fire_id="42")).encode(), "fire_id"),
            "bad time": (json.dumps(dict(good, deadline="soon")).encode(), "deadline"),
            "bad attempt": (json.dumps(dict(good, attempt="one")).encode(), "attempt"),
        }
        for name, (body, field) in cases.items():
            with self.subTest(name):
                status, headers, answer = request(base + "/fires", "POST", body, {ce.SIGNATURE_HEADER: ce.sign_now(SECRET, body)})
                self.assertEqual(status, 400)
                self.assertEqual(headers["Content-Type"], "application/problem+json")
                self.assertIn(field, answer["detail"])
        status, _, answer = dispatch(base, good, extra={ce.FIRE_HEADER: str(uuid.uuid4())})
        self.assertEqual(status, 400)
        self.assertIn(ce.FIRE_HEADER, answer["detail"])
        self.assertEqual(sum(executor.runs.values()), 0)

    def test_named_handlers_and_routes(self):
        executor, base = self.start(handlers=["echo"])
        status, _, answer = dispatch(base, make_fire(self.receiver, {}, handler="nope"))
        self.assertEqual(status, 404)
        self.assertIn("nope", answer["detail"])
        self.assertEqual(request(base + "/elsewhere")[0], 404)
        self.assertEqual(request(base + "/fires")[0], 405)
        status, _, body = request(base + "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok", "running": 0, "queued": 0, "capacity": 4}))

    def test_fire_status_is_signed_over_an_empty_body(self):
        executor, base = self.start()
        fire = make_fire(self.receiver, {"x": 1})
        dispatch(base, fire)
        self.receiver.wait_result(fire["fire_id"])
        url = f"{base}/fires/{fire['fire_id']}"
        self.assertEqual(request(url)[0], 401)
        status, _, body = request(url, headers={ce.SIGNATURE_HEADER: ce.sign_now(SECRET, b"")})
        self.assertEqual(status, 200)
        self.assertEqual((body["fire_id"], body["state"], body["result"]["status"]), (fire["fire_id"], "finished", "succeeded"))
        self.receiver.wait_for("delivered flag", lambda: request(url, headers={ce.SIGNATURE_HEADER: ce.sign_now(SECRET, b"")})[2]["delivered"])
        status, _, _ = request(f"{base}/fires/{uuid.uuid4()}", headers={ce.SIGNATURE_HEADER: ce.sign_now(SECRET, b"")})
        self.assertEqual(status, 404)

    def test_write_back_is_retried_and_a_final_4xx_is_not(self):
        executor, base = self.start()
        self.receiver.answers = [503, 429]
        fire = make_fire(self.receiver, {"x": 1})
        dispatch(base, fire)
        self.receiver.wait_result(fire["fire_id"])
        self.assertEqual(self.receiver.attempts[fire["fire_id"]], 3)
        self.receiver.answers = [409]
        other = make_fire(self.receiver, {"x": 2})
        dispatch(base, other)
        self.receiver.wait_for("the refusal to be counted", lambda: executor.stats()["delivery_failures"] == 1)
        time.sleep(0.5)
        self.assertEqual(self.receiver.attempts[other["fire_id"]], 1)

    def test_heartbeats_are_signed_and_their_cancels_honoured(self):
        executor, base = self.start(scheduler_url=self.receiver.base, app="py-tests", heartbeat_interval=0.1, handlers=["echo"])
        beat, ok = self.receiver.wait_for("a heartbeat", lambda: self.receiver.heartbeats and self.receiver.heartbeats[0])
        self.assertTrue(ok)
        self.assertEqual((beat["app"], beat["address"], beat["handlers"], beat["capacity"]), ("py-tests", base, ["echo"], 4))
        fire = make_fire(self.receiver, {"block": True})
        dispatch(base, fire)
        self.assertTrue(executor.started.wait(PATIENCE))
        with self.receiver.cond:
            self.receiver.cancel = [fire["fire_id"]]
        result, _ = self.receiver.wait_result(fire["fire_id"])
        self.assertEqual((result["status"], result["error"]), ("failed", "cancelled"))

    def test_stop_refuses_new_fires_and_reports_queued_ones(self):
        executor, base = self.start(capacity=1)
        running = make_fire(self.receiver, {"block": True})
        waiting = make_fire(self.receiver, {"x": 1})
        dispatch(base, running)
        self.assertTrue(executor.started.wait(PATIENCE))
        dispatch(base, waiting)
        stopper = threading.Thread(target=executor.stop, kwargs={"grace": PATIENCE})
        stopper.start()
        result, _ = self.receiver.wait_result(waiting["fire_id"])
        self.assertTrue(result["error"].startswith("not started"), result["error"])
        status, headers, _ = dispatch(base, make_fire(self.receiver, {}))
        self.assertEqual((status, headers["Retry-After"]), (503, "1"))
        self.assertEqual(request(base + "/healthz")[2]["status"], "draining")
        executor.release.set()
        stopper.join(PATIENCE)
        self.assertFalse(stopper.is_alive())
        self.assertEqual(self.receiver.wait_result(running["fire_id"])[0]["status"], "succeeded")
        self.assertEqual(executor.stop(), {"finished_in_grace": True, "cancelled": 0, "not_started": 1, "undelivered": 0})


class ExampleExecutorTests(unittest.TestCase):
    """The CLI a Rust test starts: one LISTENING line, echo/fail, clean stop."""

    def test_cli_echoes_fails_and_stops_on_sigterm(self):
        receiver = Receiver()
        self.addCleanup(receiver.close)
        process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "example_executor.py"), "--listen", "127.0.0.1:0", "--secret", SECRET.decode(), "--prefix", "/hooks"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.addCleanup(process.stdout.close)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait(PATIENCE)))
        line = _readline(process, PATIENCE)
        match = re.fullmatch(r"LISTENING (http://127\.0\.0\.1:\d+/hooks)\n", line)
        self.assertIsNotNone(match, repr(line))
        base = match.group(1)

        ok = make_fire(receiver, {"n": 7, "sleep_ms": 50})
        self.assertEqual(dispatch(base, ok)[0], 202)
        result, signed = receiver.wait_result(ok["fire_id"])
        self.assertTrue(signed)
        self.assertEqual(result["status"], "succeeded")
        self.assertEqual(json.loads(result["output"]), {"echo": {"n": 7, "sleep_ms": 50}, "lang": "python"})

        bad = make_fire(receiver, {"fail": "boom"})
        self.assertEqual(dispatch(base, bad)[0], 202)
        result, _ = receiver.wait_result(bad["fire_id"])
        self.assertEqual((result["status"], result["error"]), ("failed", "boom"))

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(PATIENCE), 0)
        self.assertEqual(process.stdout.read(), "", "nothing else is printed to stdout")


def _readline(process: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise AssertionError(f"no LISTENING line within {timeout}s")
    return box[0]


if __name__ == "__main__":
    unittest.main()
