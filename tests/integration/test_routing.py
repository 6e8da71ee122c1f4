"""test_routing.py: routes and fallback chains, weighted provider keys, skipped and cooling keys,
retries with back-off, provider:model?params, force_model and aliases, context windows: all
against the mock with two workers."""
import collections
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2)
MSG = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
DEAD = "http://127.0.0.1:%d" % h.free_port()


def provider(name, keys, base=None, **extra):
    body = {"name": name, "base_url": base or mock.url,
            "api_keys": [{"key": k, "weight": w} for k, w in keys]}
    body.update(extra)
    r = gw.admin("POST", "/admin/providers", body)
    assert r.status == 201, r
    return r.json()


def route(name, targets, **extra):
    body = {"name": name, "targets": [{"provider": p, "model": m} for p, m in targets]}
    body.update(extra)
    r = gw.admin("POST", "/admin/routes", body)
    assert r.status == 201, r


def key(**fields):
    r = gw.admin("POST", "/admin/keys", dict(fields, name=fields.pop("name", "k")))
    assert r.status == 201, r
    return r.json()["key"]


def keys_seen():
    return [r["headers"].get("x-api-key") for r in mock.requests() if r["path"] == "/v1/messages"]


def setup_module():
    provider("overloaded", [("status-529-p1", 1)])
    provider("refused", [("sk-refused", 1)], base=DEAD)
    provider("good", [("sk-good-1", 1)])
    provider("broken400", [("status-400-x", 1)])
    provider("cutter", [("cut-x", 1)])
    route("chain-529", [("overloaded", "claude-opus-4-5"), ("good", "claude-sonnet-4-5")])
    route("chain-refused", [("refused", "claude-opus-4-5"), ("good", "claude-haiku-4-5")])
    route("chain-400", [("broken400", "m1"), ("good", "m2")])
    route("chain-stream", [("cutter", "m1"), ("good", "m2")])
    route("chain-all-bad", [("overloaded", "m1"), ("refused", "m2")])


def test_falls_back_on_529_and_serves_from_second_target():
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="chain-529"))
    assert r.status == 200, r
    assert r.headers["x-gatehouse-provider"] == "good"
    assert r.headers["x-gatehouse-model"] == "claude-sonnet-4-5"
    assert r.headers["x-gatehouse-attempts"] == "2"
    seen = mock.requests()
    assert [x["headers"]["x-api-key"] for x in seen] == ["status-529-p1", "sk-good-1"]
    # upstream saw the target's model, spliced into otherwise identical bytes
    assert json.loads(seen[0]["body"])["model"] == "claude-opus-4-5"
    assert json.loads(seen[1]["body"])["model"] == "claude-sonnet-4-5"
    assert json.loads(r.body)["model"] == "claude-sonnet-4-5"
    rid = r.headers["x-gatehouse-request-id"]
    row = wait_row(rid)
    assert row["attempts"] == 2 and row["provider"] == "good", row
    assert row["model_requested"] == "chain-529" and row["model"] == "claude-sonnet-4-5", row


def test_falls_back_on_connection_refused():
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="chain-refused"))
    assert r.status == 200, r
    assert r.headers["x-gatehouse-provider"] == "good"
    assert r.headers["x-gatehouse-attempts"] == "2"
    assert json.loads(mock.last()["body"])["model"] == "claude-haiku-4-5"


def test_no_fallback_on_400():
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="chain-400"))
    assert r.status == 400, r
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert len(mock.requests()) == 1


def test_no_fallback_after_first_streamed_byte():
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="chain-stream", stream=True),
                {"x-mock-cut-after": "3"})
    assert r.status == 200
    evs = h.sse_events(r.body.decode())
    assert evs[0][0] == "message_start" and evs[-1][0] == "error", evs
    assert sum(1 for e, _ in evs if e == "message_start") == 1, "stream stitched from two answers"
    assert len(mock.requests()) == 1


def test_every_target_failing_gives_the_last_error():
    r = gw.post("/v1/messages", dict(MSG, model="chain-all-bad"))
    # the last target was unreachable: 502 in Anthropic's shape
    assert r.status == 502, r
    assert r.json()["error"]["type"] == "api_error"
    route("chain-last-529", [("refused", "m1"), ("overloaded", "m2")])
    r = gw.post("/v1/messages", dict(MSG, model="chain-last-529"))
    assert r.status == 529, r
    assert r.json()["error"]["type"] == "overloaded_error"


def test_401_key_is_skipped():
    provider("mixed", [("bad-key-1", 1), ("sk-mixed-good", 1)])
    route("mixed-route", [("mixed", "claude-sonnet-4-5")])
    mock.reset()
    for _ in range(20):
        r = gw.post("/v1/messages", dict(MSG, model="mixed-route"))
        assert r.status == 200, r
    seen = keys_seen()
    assert seen.count("sk-mixed-good") == 20
    # a refused key may be tried at most once per request before the good one
    assert seen.count("bad-key-1") <= 20


def test_429_key_cools_down_for_retry_after_then_is_used_again():
    provider("coolers", [("limited-k1", 1), ("sk-cool-ok", 1)])
    route("cool-route", [("coolers", "claude-sonnet-4-5")])
    mock.reset()
    hdr = {"x-mock-retry-after": "2"}
    # until the limited key has been hit once
    for _ in range(40):
        assert gw.post("/v1/messages", dict(MSG, model="cool-route"), hdr).status == 200
        if "limited-k1" in keys_seen():
            break
    t_hit = time.time()
    assert keys_seen().count("limited-k1") == 1
    mock.reset()
    while time.time() - t_hit < 1.5:
        assert gw.post("/v1/messages", dict(MSG, model="cool-route"), hdr).status == 200
    assert "limited-k1" not in keys_seen(), "a cooling key was used in another request"
    time.sleep(max(0, 2.3 - (time.time() - t_hit)))
    mock.reset()
    for _ in range(30):
        gw.post("/v1/messages", dict(MSG, model="cool-route"), hdr)
    assert "limited-k1" in keys_seen(), "the key was not used again after its cooldown"


def test_weighted_choice_within_five_points():
    provider("weighted", [("sk-w-a", 1), ("sk-w-b", 3)])
    route("weighted-route", [("weighted", "claude-sonnet-4-5")])
    mock.reset()
    n = 2000
    errors = []

    def worker(count):
        for _ in range(count):
            r = gw.post("/v1/messages", dict(MSG, model="weighted-route"))
            if r.status != 200:
                errors.append(r)
    ts = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:2]
    c = collections.Counter(keys_seen())
    share_a = c["sk-w-a"] / float(n)
    assert abs(share_a - 0.25) <= 0.05, c


def test_retries_with_backoff_then_relay():
    provider("flaky", [("status-503-only", 1)], max_retries=2, backoff_initial_ms=100,
             backoff_max_ms=400)
    route("flaky-route", [("flaky", "claude-sonnet-4-5")])
    mock.reset()
    t0 = time.time()
    r = gw.post("/v1/messages", dict(MSG, model="flaky-route"))
    took = time.time() - t0
    assert r.status == 503, r
    assert r.headers["x-gatehouse-attempts"] == "3"
    assert len(mock.requests()) == 3
    # two back-offs: the first in [50, 100] ms, the second in [100, 200] ms
    assert 0.15 <= took < 2.0, took


def test_provider_model_params_reach_upstream():
    mock.reset()
    body = dict(MSG, model="good:claude-3-5-sonnet?temperature=0.7&top_k=40")
    r = gw.post("/v1/messages", body)
    assert r.status == 200, r
    up = json.loads(mock.last()["body"])
    assert up["model"] == "claude-3-5-sonnet"
    assert up["temperature"] == 0.7 and up["top_k"] == 40
    assert up["messages"] == MSG["messages"] and up["max_tokens"] == 8
    assert mock.last()["headers"]["x-api-key"] == "sk-good-1"
    row = wait_row(r.headers["x-gatehouse-request-id"])
    assert row["model_requested"] == "good:claude-3-5-sonnet?temperature=0.7&top_k=40", row
    assert row["model"] == "claude-3-5-sonnet" and row["provider"] == "good", row
    # provider/model pins too
    r = gw.post("/v1/messages", dict(MSG, model="good/claude-haiku-4-5"))
    assert r.status == 200 and r.headers["x-gatehouse-provider"] == "good"
    r = gw.post("/v1/messages", dict(MSG, model="nosuch:claude"))
    assert r.status == 400 and "nosuch" in r.json()["error"]["message"]


def test_force_model_and_aliases():
    k = key(force_model="chain-529")
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="whatever-the-client-says"), {"x-api-key": k})
    assert r.status == 200 and r.headers["x-gatehouse-provider"] == "good", r
    k2 = key(aliases={"fast": "good/claude-haiku-4-5", "smart": "chain-529"})
    r = gw.post("/v1/messages", dict(MSG, model="fast"), {"x-api-key": k2})
    assert r.status == 200 and r.headers["x-gatehouse-model"] == "claude-haiku-4-5", r
    r = gw.post("/v1/messages", dict(MSG, model="smart"), {"x-api-key": k2})
    assert r.status == 200 and r.headers["x-gatehouse-attempts"] == "2", r
    r = gw.post("/v1/messages", dict(MSG, model="claude-x"), {"x-api-key": k2})
    assert r.status == 200 and r.headers["x-gatehouse-model"] == "claude-x", r


def test_context_window_enforcement_is_opt_in():
    route("small-window", [("good", "claude-sonnet-4-5")], enforce_context=True,
          max_input_tokens=1000)
    route("no-window", [("good", "claude-sonnet-4-5")], max_input_tokens=1000)
    big = dict(MSG, messages=[{"role": "user", "content": "x " * 20000}])
    r = gw.post("/v1/messages", dict(big, model="small-window"))
    assert r.status == 400, r
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"].startswith("prompt is too long:"), r
    assert gw.post("/v1/messages", dict(big, model="no-window")).status == 200
    # a request well inside the window passes
    assert gw.post("/v1/messages", dict(MSG, model="small-window")).status == 200
    row = wait_row_where("model_requested = 'small-window' AND status = 400")
    assert row["error_type"] == "context_window_exceeded"


def wait_row(rid):
    return wait_row_where("request_id = '%s'" % rid)


def wait_row_where(where):
    import sqlite3
    db = os.path.join(gw.data_dir, "gatehouse.db")
    found = []

    def look():
        c = sqlite3.connect(db)
        c.row_factory = sqlite3.Row
        try:
            found[:] = [dict(x) for x in c.execute("SELECT * FROM usage_log WHERE " + where)]
        finally:
            c.close()
        return found
    h.wait_for(look, what="usage row " + where)
    return found[0]


try:
    setup_module()
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
