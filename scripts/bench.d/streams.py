#!/usr/bin/env python3
"""streams.py: case 4 of scripts/bench: opens many concurrent SSE streams and timestamps events.

Usage: streams.py --port P --streams N --events E --interval-ms I [--header 'Name: value']...
                  [--body FILE] [--path /v1/messages] [--rss-pid PID]... [--timeout S]

Each stream is one connection and one POST; the mock paces E text deltas (plus 6 framing events)
I ms apart. For every stream we note when each SSE "data:" line arrived. The per-event delay is
how much later than I ms after its predecessor an event arrived (gap - I); a hop that holds
events back shows up there, constant transit time does not. While streams run, VmRSS of the
given PIDs is sampled with the number of open streams. Prints one JSON object on stdout.
"""
import argparse
import asyncio
import json
import os
import resource
import sys
import time

TERMINATOR = b"\r\n0\r\n\r\n"  # end of a chunked body
CARRY = 16


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class State:
    def __init__(self):
        self.open = 0
        self.max_open = 0
        self.done = 0
        self.failed = 0
        self.errors = {}


class Stream(asyncio.Protocol):
    def __init__(self, req, st, fut):
        self.req = req
        self.st = st
        self.fut = fut
        self.head = b""
        self.in_body = False
        self.status = 0
        self.carry = b""
        self.times = []
        self.t_sent = 0.0
        self.saw_stop = False
        self.clean = False
        self.transport = None
        self.counted_open = False

    def connection_made(self, transport):
        self.transport = transport
        self.t_sent = time.monotonic()
        transport.write(self.req)

    def _finish(self, err=None):
        if self.fut.done():
            return
        if self.counted_open:
            self.st.open -= 1
            self.counted_open = False
        if err is None and self.saw_stop:
            self.fut.set_result(self)
        else:
            self.fut.set_result(err or "stream ended before message_stop")
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data):
        now = time.monotonic()
        if not self.in_body:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                if len(self.head) > 65536:
                    self._finish("response headers too long")
                return
            line = self.head.split(b"\r\n", 1)[0].split()
            self.status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
            data = self.head[i + 4:]
            self.head = b""
            self.in_body = True
            if self.status != 200:
                self._finish("HTTP %d" % self.status)
                return
            self.st.open += 1
            self.counted_open = True
            if self.st.open > self.st.max_open:
                self.st.max_open = self.st.open
            self.carry = b"\r\n"  # lets TERMINATOR match a body that is only the last chunk
        buf = self.carry + data
        # a "\ndata:" whose last byte lies in the new data is a new event
        n = buf.count(b"\ndata:") - self.carry.count(b"\ndata:")
        if n > 0:
            self.times.extend([now] * n)
        if not self.saw_stop and b"message_stop" in buf:
            self.saw_stop = True
            # an answer not chunk-encoded has no terminator: give it 2 s to close
            asyncio.get_running_loop().call_later(2.0, self._finish)
        if self.saw_stop and TERMINATOR in buf:
            self.clean = True
            self._finish()
            return
        self.carry = buf[-CARRY:] if len(buf) >= CARRY else buf

    def eof_received(self):
        self._finish()

    def connection_lost(self, exc):
        self._finish(None if exc is None else "connection lost: %s" % exc)


async def one(loop, args, req, st, sem, results):
    fut = loop.create_future()
    try:
        async with sem:
            await asyncio.wait_for(
                loop.create_connection(lambda: Stream(req, st, fut), "127.0.0.1", args.port),
                timeout=args.timeout)
        r = await asyncio.wait_for(fut, timeout=args.timeout)
    except Exception as e:  # timeout, refused, reset
        r = "%s %s" % (type(e).__name__, e)
        if not fut.done():
            fut.set_result(r)
    if isinstance(r, Stream) and len(r.times) == args.expect:
        st.done += 1
        results.append(r)
    else:
        st.failed += 1
        if isinstance(r, Stream):
            r = "%d of %d events" % (len(r.times), args.expect)
        key = str(r)[:120]
        st.errors[key] = st.errors.get(key, 0) + 1


async def sampler(args, st, samples, stop):
    while not stop.is_set():
        rss = [rss_kb(p) for p in args.rss_pid]
        samples.append((time.monotonic(), st.open, rss))
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.05)
        except asyncio.TimeoutError:
            pass


async def main_async(args):
    body = open(args.body, "rb").read() if args.body else json.dumps({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "stream": True,
        "messages": [{"role": "user", "content": "Count slowly."}]}).encode()
    hdrs = ["POST %s HTTP/1.1" % args.path, "Host: 127.0.0.1:%d" % args.port,
            "Content-Type: application/json", "Accept: text/event-stream",
            "Content-Length: %d" % len(body),
            "x-mock-events: %d" % args.events, "x-mock-interval-ms: %d" % args.interval_ms]
    hdrs += args.header
    req = ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    st = State()
    sem = asyncio.Semaphore(args.connect_concurrency)
    results, samples = [], []
    stop = asyncio.Event()
    idle = [rss_kb(p) for p in args.rss_pid]
    samp = asyncio.ensure_future(sampler(args, st, samples, stop))
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(one(loop, args, req, st, sem, results)) for _ in range(args.streams)]
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    stop.set()
    await samp

    iv = args.interval_ms / 1000.0
    delays, first = [], []
    for r in results:
        t = r.times
        first.append(t[0] - r.t_sent)
        delays.extend(t[i] - t[i - 1] - iv for i in range(1, len(t)))
    delays.sort()
    first.sort()
    ms = lambda v: None if v is None else round(v * 1000.0, 3)
    peak = max(samples, key=lambda s: (s[1], sum(s[2]))) if samples else (0, 0, [])
    rss_max = [max((s[2][i] for s in samples), default=0) for i in range(len(args.rss_pid))]
    out = {
        "streams": args.streams, "events_per_stream": args.expect, "completed": st.done,
        "failed": st.failed, "unclean_end": sum(1 for r in results if not r.clean),
        "errors": st.errors, "max_open": st.max_open, "elapsed_s": round(elapsed, 3),
        "delay_ms": {"p50": ms(pct(delays, 50)), "p99": ms(pct(delays, 99)),
                     "max": ms(delays[-1] if delays else None), "n": len(delays)},
        "first_event_ms": {"p50": ms(pct(first, 50)), "p99": ms(pct(first, 99))},
        "rss_kb": {"pids": args.rss_pid, "idle": idle, "at_peak_open": peak[2],
                   "open_at_peak": peak[1], "max": rss_max},
    }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/messages")
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--interval-ms", type=int, default=10)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--body")
    ap.add_argument("--rss-pid", type=int, action="append", default=[])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--connect-concurrency", type=int, default=256)
    args = ap.parse_args()
    # the mock's text plan: message_start, content_block_start, ping, E deltas,
    # content_block_stop, message_delta, message_stop
    args.expect = args.events + 6
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.streams + 256)) if hard != resource.RLIM_INFINITY else args.streams + 256
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    out = asyncio.run(main_async(args))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
