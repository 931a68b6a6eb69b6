#!/usr/bin/env python3
"""A runnable cronhook executor in Python (standard library only).

    python3 example_executor.py --listen 127.0.0.1:0 --secret SECRET \
        [--prefix /cronhook] [--scheduler-url URL] [--app NAME]

Once listening it prints exactly one line to stdout and flushes it:

    LISTENING http://127.0.0.1:<port><prefix>

Jobs dispatch to that URL + "/fires". Every fire, whatever its handler name:
- payload {"sleep_ms": N}: sleeps N ms first (waking early if the fire is cancelled);
- payload {"fail": "msg"}: fails with the error "msg";
- otherwise succeeds with the output {"echo": <payload>, "lang": "python"} (compact JSON).

Logs go to stderr (level from --log-level, default WARNING). SIGTERM or SIGINT stops
it gracefully (new dispatches get 503, running fires finish, results are flushed) and
it exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cronhook_executor import DEFAULT_PREFIX, Executor, FireContext  # noqa: E402


class ExampleExecutor(Executor):
    """Echoes the payload; `fail` and `sleep_ms` in the payload change that."""

    def run(self, ctx: FireContext) -> str | None:
        payload = ctx.payload
        if isinstance(payload, dict):
            sleep_ms = payload.get("sleep_ms")
            if isinstance(sleep_ms, (int, float)) and not isinstance(sleep_ms, bool) and sleep_ms > 0:
                if ctx.wait(sleep_ms / 1000.0):
                    raise RuntimeError("cancelled while sleeping")
            if "fail" in payload:
                message = payload["fail"]
                raise RuntimeError(message if isinstance(message, str) else json.dumps(message))
        ctx.log.info("echoing")
        return json.dumps({"echo": payload, "lang": "python"}, separators=(",", ":"), ensure_ascii=False)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0 = any)")
    parser.add_argument("--secret", default=os.environ.get("CRONHOOK_SECRET"), help="the app's signing secret (or CRONHOOK_SECRET)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="route prefix (default /cronhook)")
    parser.add_argument("--scheduler-url", default=None, help="scheduler base URL; enables heartbeats")
    parser.add_argument("--app", default="example", help="app name sent in heartbeats")
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--queue-len", type=int, default=16)
    parser.add_argument("--grace", type=float, default=10.0, help="seconds running fires get on stop")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or CRONHOOK_SECRET) is required")

    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    executor = ExampleExecutor(
        args.secret,
        prefix=args.prefix,
        capacity=args.capacity,
        queue_len=args.queue_len,
        scheduler_url=args.scheduler_url,
        app=args.app,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    host, port = args.listen
    address = executor.serve(host, port)
    print(f"LISTENING {address}", flush=True)

    while not stop.wait(0.5):
        pass
    report = executor.stop(grace=args.grace)
    logging.getLogger("cronhook_executor").info("stopped: %s", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
