"""test_relay.py: the native relay against the mock: byte-exact bodies, header rules both ways,
streaming order and timing, upstream errors, unreachable and slow upstreams."""
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2)

ODD_BODY = ('{ "zzz_unknown" : {"model":"nested-must-not-match"},\n'
            '  "model":"claude-sonnet-4-5",\t"max_tokens":16,'
            '"messages":[{"role":"user","content":"h\\u00e9llo \\"q\\" \xc3\xa9"}],'
            '"metadata":{"user_id":"u1"}   }')


def test_body_is_forwarded_byte_for_byte():
    mock.reset()
    body = ODD_BODY.encode("latin-1")
    r = gw.post("/v1/messages?beta=true", body, {
        "x-api-key": gw.key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31,files-api-2025-04-14",
        "anthropic-custom-thing": "kept",
        "x-stainless-os": "Linux",
        "x-stainless-retry-count": "0",
        "user-agent": "itest/1.0",
    })
    assert r.status == 200, r
    got = mock.last()
    assert got["path"] == "/v1/messages", got["path"]
    assert got["query"] == "beta=true", got["query"]
    assert got["body"].encode("utf-8") == body.decode("utf-8").encode("utf-8"), got["body"]
    assert got["body_len"] == len(body), (got["body_len"], len(body))
    hd = got["headers"]
    assert hd["x-api-key"] == h.PROVIDER_KEY
    assert "authorization" not in hd
    assert hd["anthropic-version"] == "2023-06-01"
    assert hd["anthropic-beta"] == "prompt-caching-2024-07-31,files-api-2025-04-14"
    assert hd["anthropic-custom-thing"] == "kept"
    assert hd["x-stainless-os"] == "Linux"
    assert hd["x-stainless-retry-count"] == "0"
    assert hd["user-agent"] == "itest/1.0"
    assert "expect" not in hd
    # answer headers relayed
    assert r.headers["request-id"].startswith("req_mock_")
    assert r.headers["anthropic-ratelimit-requests-limit"] == "1000"
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-gatehouse-provider"] == "anthropic"
    m = r.json()
    assert m["type"] == "message" and m["model"] == "claude-sonnet-4-5"
    assert m["content"][0]["text"] == "Hello from mock"


def test_client_credentials_never_reach_upstream():
    for hdr in ({"authorization": "Bearer " + gw.key}, {"authorization": "Token " + gw.key},
                {"x-api-key": gw.key, "cookie": "session=1"}):
        mock.reset()
        r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []}, hdr)
        assert r.status == 200, r
        hd = mock.last()["headers"]
        assert hd["x-api-key"] == h.PROVIDER_KEY
        assert "authorization" not in hd and "cookie" not in hd
        for v in hd.values():
            assert gw.key not in v, hd


def test_anthropic_prefix_and_count_tokens():
    mock.reset()
    r = gw.post("/anthropic/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
    assert r.status == 200, r
    assert mock.last()["path"] == "/v1/messages"
    r = gw.post("/v1/messages/count_tokens?beta=true", {"model": "m", "messages": []})
    assert r.status == 200, r
    assert r.json()["input_tokens"] == 11
    assert mock.last()["path"] == "/v1/messages/count_tokens"
    assert mock.last()["query"] == "beta=true"
    r = gw.post("/anthropic/v1/messages/count_tokens", {"model": "m", "messages": []})
    assert r.status == 200, r


def test_keep_alive_connection_serves_many_requests():
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    for _ in range(20):
        conn.request("POST", "/v1/messages", body=b'{"model":"m","max_tokens":1,"messages":[]}',
                     headers={"content-type": "application/json", "x-api-key": gw.key})
        r = conn.getresponse()
        assert r.status == 200
        r.read()
    conn.close()


def test_stream_events_in_order_and_as_they_arrive():
    mock.reset()
    chunks = list(h.raw_stream(gw.port, "/v1/messages",
                               {"model": "m", "max_tokens": 5, "stream": True, "messages": []},
                               {"x-mock-events": "6", "x-mock-interval-ms": "150",
                                "x-api-key": gw.key}))
    raw = b"".join(c for _, c in chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"text/event-stream" in head.lower()
    text = h.dechunk(body).decode()
    names = [e for e, _ in h.sse_events(text)]
    assert names[0] == "message_start", names
    assert names[1] == "content_block_start"
    assert "ping" in names
    assert names.count("content_block_delta") == 6
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names
    # the first event reached us long before the mock sent its last one (~1 s later)
    first = next(t for t, c in chunks if b"message_start" in c)
    last = chunks[-1][0]
    assert last - first > 0.6, (first, last)
    assert first < 0.5, first


def test_stream_tool_use_and_thinking_pass_through():
    for scenario, must in (("tool", "input_json_delta"), ("thinking", "signature_delta")):
        r = gw.post("/v1/messages", {"model": "m", "max_tokens": 5, "stream": True, "messages": []},
                    {"x-mock-scenario": scenario})
        assert r.status == 200, r
        assert must in r.body.decode(), r.body
        evs = h.sse_events(r.body.decode())
        assert evs[-1][0] == "message_stop"


def test_upstream_errors_are_relayed_unchanged():
    # 429 last: it puts the provider's only key into a cool-down for its retry-after
    for scenario, status, etype in (("529", 529, "overloaded_error"), ("500", 500, "api_error"),
                                    ("400", 400, "invalid_request_error"),
                                    ("404", 404, "not_found_error"),
                                    ("429", 429, "rate_limit_error")):
        mock.reset()
        r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []},
                    {"x-mock-scenario": scenario, "x-mock-retry-after": "1"})
        assert r.status == status, (scenario, r)
        assert r.json()["error"]["type"] == etype, r
        assert r.json()["type"] == "error"
        if status == 429:
            assert r.headers["retry-after"] == "1", r.headers
    # while the key cools, gatehouse answers for it, saying when to come back
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
    assert r.status == 429 and r.headers["retry-after"] == "1", r
    assert "cooling down" in r.json()["error"]["message"]
    time.sleep(1.1)
    # the mock's exact bytes come back
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []},
                {"x-mock-scenario": "529"})
    direct = h.request(mock.port, "POST", "/v1/messages",
                       {"model": "m", "max_tokens": 1, "messages": []}, {"x-mock-scenario": "529"})
    assert r.body == direct.body, (r.body, direct.body)


def test_mid_stream_upstream_error_event_reaches_client():
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 5, "stream": True, "messages": []},
                {"x-mock-scenario": "sse-error", "x-mock-cut-after": "3"})
    assert r.status == 200
    evs = h.sse_events(r.body.decode())
    assert evs[0][0] == "message_start"
    assert evs[-1][0] == "error", evs
    assert "overloaded_error" in evs[-1][1]


def test_upstream_cut_mid_stream_ends_with_error_event():
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 5, "stream": True, "messages": []},
                {"x-mock-scenario": "cut", "x-mock-cut-after": "3"})
    assert r.status == 200
    evs = h.sse_events(r.body.decode())
    assert evs[0][0] == "message_start", evs
    assert evs[-1][0] == "error", evs
    assert '"type":"error"' in evs[-1][1]
    assert "message_stop" not in [e for e, _ in evs]


def test_upstream_cut_before_answer_is_502():
    r = gw.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []},
                {"x-mock-scenario": "cut"})
    assert r.status == 502, r
    assert r.json()["error"]["type"] == "api_error"


def test_probes_need_no_key():
    for method, path in (("HEAD", "/"), ("HEAD", "/api/hello"), ("GET", "/healthz")):
        r = gw.req(method, path)
        assert r.status == 200, (method, path, r)


def test_unreachable_upstream_is_502():
    dead = "http://127.0.0.1:%d" % h.free_port()
    g = h.Gateway(dead, workers=1)
    try:
        r = g.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
        assert r.status == 502, r
        e = r.json()
        assert e["type"] == "error" and e["error"]["type"] == "api_error", e
        assert h.PROVIDER_KEY not in r.body.decode()
    finally:
        g.cleanup()


def test_slow_upstream_is_504():
    g = h.Gateway(mock.url, workers=1)
    try:
        g.stop()
        db = sqlite3.connect(os.path.join(g.data_dir, "gatehouse.db"))
        db.execute("UPDATE providers SET timeout_ms = 300")
        db.commit()
        db.close()
        g.start()
        t0 = time.time()
        r = g.post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []},
                   {"x-mock-scenario": "slow", "x-mock-delay-ms": "3000"})
        assert r.status == 504, r
        assert r.json()["error"]["type"] == "timeout_error"
        assert time.time() - t0 < 2.5
        # a stream that stalls after its first bytes ends with an error event
        r = g.post("/v1/messages", {"model": "m", "max_tokens": 1, "stream": True, "messages": []},
                   {"x-mock-events": "3", "x-mock-interval-ms": "1000"})
        evs = h.sse_events(r.body.decode())
        assert evs[0][0] == "message_start" and evs[-1][0] == "error", evs
    finally:
        g.cleanup()


def test_no_secret_in_logs():
    logs = gw.logs()
    assert h.PROVIDER_KEY not in logs
    assert gw.key not in logs


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
