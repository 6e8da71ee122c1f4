"""test_signals.py: the process model: a killed worker is respawned, SIGTERM lets streams finish,
SIGHUP swaps worker generations under load without dropping a request."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()

BODY = {"model": "m", "max_tokens": 1, "messages": []}


def test_killed_worker_is_respawned():
    gw = h.Gateway(mock.url, workers=2)
    try:
        before = gw.workers()
        assert len(before) == 2, before
        os.kill(before[0], signal.SIGKILL)
        h.wait_for(lambda: len(gw.workers()) == 2 and before[0] not in gw.workers(),
                   what="respawned worker")
        for _ in range(10):
            assert gw.post("/v1/messages", BODY).status == 200
        assert "killed by signal 9" in gw.logs()
    finally:
        gw.cleanup()


def test_sigterm_lets_a_stream_finish():
    gw = h.Gateway(mock.url, workers=2, drain_timeout=10)
    try:
        chunks = []
        it = h.raw_stream(gw.port, "/v1/messages", dict(BODY, stream=True),
                          {"x-mock-events": "10", "x-mock-interval-ms": "100",
                           "x-api-key": gw.key})
        for t, c in it:
            chunks.append(c)
            if b"message_start" in b"".join(chunks):
                break
        gw.signal(signal.SIGTERM)
        for t, c in it:
            chunks.append(c)
        raw = b"".join(chunks)
        body = h.dechunk(raw.partition(b"\r\n\r\n")[2]).decode()
        names = [e for e, _ in h.sse_events(body)]
        assert names[-1] == "message_stop", names
        assert names.count("content_block_delta") == 10
        assert gw.proc.wait(15) == 0
        # new connections are refused once the gateway stopped
        try:
            h.request(gw.port, "GET", "/healthz", timeout=1)
            assert False, "still accepting after stop"
        except OSError:
            pass
    finally:
        gw.cleanup()


def test_sighup_under_load_drops_nothing():
    gw = h.Gateway(mock.url, workers=2)
    try:
        stop = threading.Event()
        results = []

        def load():
            while not stop.is_set():
                try:
                    r = gw.post("/v1/messages", BODY, {"x-mock-delay-ms": "20"}, timeout=10)
                    results.append(r.status)
                except Exception as e:  # noqa: BLE001
                    results.append(repr(e))
        ts = [threading.Thread(target=load) for _ in range(6)]
        for t in ts:
            t.start()
        before = set(gw.workers())
        for _ in range(3):
            time.sleep(0.5)
            gw.signal(signal.SIGHUP)
        time.sleep(0.7)
        stop.set()
        for t in ts:
            t.join()
        bad = [r for r in results if r != 200]
        assert not bad, bad[:5]
        assert len(results) > 50, len(results)
        h.wait_for(lambda: len(gw.workers()) == 2, what="old generation gone")
        assert not (set(gw.workers()) & before), "old workers still running"
    finally:
        gw.cleanup()


def test_sighup_keeps_a_running_stream():
    gw = h.Gateway(mock.url, workers=1)
    try:
        chunks = []
        it = h.raw_stream(gw.port, "/v1/messages", dict(BODY, stream=True),
                          {"x-mock-events": "8", "x-mock-interval-ms": "100",
                           "x-api-key": gw.key})
        for t, c in it:
            chunks.append(c)
            break
        gw.signal(signal.SIGHUP)
        for t, c in it:
            chunks.append(c)
        body = h.dechunk(b"".join(chunks).partition(b"\r\n\r\n")[2]).decode()
        assert h.sse_events(body)[-1][0] == "message_stop"
        assert gw.post("/v1/messages", BODY).status == 200
    finally:
        gw.cleanup()


def test_sigquit_stops_fast():
    gw = h.Gateway(mock.url, workers=2)
    t0 = time.time()
    gw.signal(signal.SIGQUIT)
    assert gw.proc.wait(10) == 0
    assert time.time() - t0 < 5
    gw.cleanup()


try:
    h.run(globals())
finally:
    mock.stop()
