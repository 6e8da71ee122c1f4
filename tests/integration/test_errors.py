"""test_errors.py: bad input gets a clear error in Anthropic's shape and never reaches upstream;
bad command lines exit 2; odd but valid HTTP (chunked bodies, 100-continue, slow clients) works."""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2, extra_args=["--max-body", "64K"])


def assert_error(r, status, etype):
    assert r.status == status, r
    e = r.json()
    assert e["type"] == "error", e
    assert e["error"]["type"] == etype, e
    assert e["error"]["message"], e


def test_invalid_json_is_400():
    mock.reset()
    for body in (b"not json", b"{\"model\":", b"[1,2]", b"{\"model\":\"m\"} trailing", b""):
        r = gw.post("/v1/messages", body)
        assert_error(r, 400, "invalid_request_error")
    assert mock.requests() == []


def test_missing_or_bad_model_is_400():
    mock.reset()
    for body in ({"max_tokens": 1}, {"model": 5}, {"model": ""},
                 {"metadata": {"model": "nested"}}):
        r = gw.post("/v1/messages", body)
        assert_error(r, 400, "invalid_request_error")
        assert "model" in r.json()["error"]["message"]
    r = gw.post("/v1/messages", {"model": "m", "stream": "yes"})
    assert_error(r, 400, "invalid_request_error")
    assert mock.requests() == []


def test_body_over_limit_is_413():
    big = b'{"model":"m","pad":"' + b"x" * (70 * 1024) + b'"}'
    r = gw.post("/v1/messages", big)
    assert_error(r, 413, "request_too_large")
    # a chunked body over the limit too
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(40):
            s.sendall(b"%x\r\n" % 4096 + b"y" * 4096 + b"\r\n")
    except OSError:
        pass
    data = s.recv(65536)
    s.close()
    assert b" 413 " in data.split(b"\r\n")[0], data[:200]


def test_unknown_path_404_and_wrong_method_405():
    assert_error(gw.req("GET", "/v2/nothing"), 404, "not_found_error")
    assert_error(gw.req("POST", "/v1/unknown", {"model": "m"}), 404, "not_found_error")
    r = gw.req("GET", "/v1/messages")
    assert_error(r, 405, "invalid_request_error")
    assert r.headers["allow"] == "POST"
    assert_error(gw.req("DELETE", "/anthropic/v1/messages"), 405, "invalid_request_error")


def test_malformed_http_is_400():
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                b"POST /v1/messages HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(raw)
        data = s.recv(4096)
        s.close()
        assert data.startswith(b"HTTP/1.1 400 "), data
        assert b'"invalid_request_error"' in data


def test_chunked_request_body_is_forwarded_exactly():
    mock.reset()
    body = b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"chunked!"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"x-api-key: " + gw.key.encode() + b"\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(body), 10):
        piece = body[i:i + 10]
        s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        time.sleep(0.01)
    s.sendall(b"0\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert mock.last()["body"].encode() == body


def test_expect_100_continue():
    mock.reset()
    body = b'{"model":"m","max_tokens":1,"messages":[]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
              b"x-api-key: " + gw.key.encode() + b"\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    interim = s.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    s.sendall(body)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert b"HTTP/1.1 200 " in data, data[:300]
    assert mock.last()["body"].encode() == body


def test_slow_client_does_not_block_others():
    # a client dribbling its head must not hold up anyone else in the same workers
    slow = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t0 = time.time()
    for _ in range(10):
        r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
        assert r.status == 200
    assert time.time() - t0 < 3
    for s in slow:
        s.close()


def test_client_gone_mid_stream_leaves_gateway_healthy():
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    body = b'{"model":"m","max_tokens":1,"stream":true,"messages":[]}'
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"x-api-key: " + gw.key.encode() + b"\r\n"
              b"x-mock-events: 50\r\nx-mock-interval-ms: 50\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    assert b"message_start" in s.recv(65536) or True
    s.close()
    time.sleep(0.3)
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
    assert r.status == 200


def test_concurrent_requests():
    errors = []

    def worker():
        try:
            for _ in range(25):
                r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
                if r.status != 200:
                    errors.append(r)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


def test_bad_flags_exit_2_with_usage():
    for args in (["--bogus"], ["--workers", "0"], ["--listen"], ["--listen", "nope"]):
        p = subprocess.run([h.GATEHOUSE] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert "usage: gatehouse" in p.stderr, p.stderr
    p = subprocess.run([h.GATEHOUSE, "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("gatehouse "), p
    p = subprocess.run([h.GATEHOUSE, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "--drain-timeout" in p.stdout, p


def test_no_provider_is_a_clear_503():
    g = h.Gateway(mock.url, workers=1, provider_key=None)
    try:
        r = g.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
        assert_error(r, 503, "api_error")
        assert "ANTHROPIC_API_KEY" in r.json()["error"]["message"]
    finally:
        g.cleanup()


def test_model_name_cannot_inject_response_headers():
    # the model is the client's string and comes back in x-gatehouse-model: a CR/LF in it must
    # not end that header and start another, on a buffered or a streamed answer
    for stream in (False, True):
        body = {"model": "claude-a\r\nx-injected=1\r\n", "max_tokens": 8, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}
        raw = b"".join(b for _, b in h.raw_stream(gw.port, "/v1/messages", body,
                                                  {"x-api-key": gw.key,
                                                   "anthropic-version": "2023-06-01"}))
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert b" 200 " in head[0], raw[:300]
        assert not any(l.lower().startswith(b"x-injected") for l in head), head
        model = [l for l in head if l.lower().startswith(b"x-gatehouse-model:")]
        assert model == [b"x-gatehouse-model: claude-a??x-injected=1??"], head


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
