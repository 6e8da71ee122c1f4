"""test_limits.py: per-key and per-provider rate limits held exactly across workers, token limits
trued up from actual usage, max_parallel under concurrent streams, budgets, and the
anthropic-ratelimit-* headers, all with two workers against the mock."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2)
MSG = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def key(**fields):
    r = gw.admin("POST", "/admin/keys", dict(fields, name=fields.pop("name", "lim")))
    assert r.status == 201, r
    return r.json()


def hammer(n_threads, per_thread, body, headers):
    out, lock = [], threading.Lock()

    def run():
        for _ in range(per_thread):
            r = gw.post("/v1/messages", body, headers)
            with lock:
                out.append(r)
    ts = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_key_rpm_exact_under_concurrency_with_headers():
    k = key(rpm_limit=25)
    rs = hammer(10, 6, MSG, {"x-api-key": k["key"]})
    ok = [r for r in rs if r.status == 200]
    limited = [r for r in rs if r.status == 429]
    assert len(ok) == 25, (len(ok), [r.status for r in rs])
    assert len(limited) == 35
    r = limited[0]
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
    assert r.headers["anthropic-ratelimit-requests-limit"] == "25"
    assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert r.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    # successful answers of a limited key carry its own headers, not upstream's
    remaining = sorted(int(x.headers["anthropic-ratelimit-requests-remaining"]) for x in ok)
    assert remaining == list(range(25)), remaining
    assert all(x.headers["anthropic-ratelimit-requests-limit"] == "25" for x in ok)


def test_provider_rpm_exact():
    r = gw.admin("POST", "/admin/providers", {"name": "capped", "base_url": mock.url,
                                              "api_keys": [{"key": "sk-capped"}], "rpm_limit": 12})
    assert r.status == 201, r
    k = key()
    rs = hammer(8, 4, dict(MSG, model="capped/claude-sonnet-4-5"), {"x-api-key": k["key"]})
    assert sum(r.status == 200 for r in rs) == 12, [r.status for r in rs]
    lim = [r for r in rs if r.status == 429]
    assert len(lim) == 20
    assert "capped" in lim[0].json()["error"]["message"]
    assert lim[0].headers["anthropic-ratelimit-requests-limit"] == "12"


def test_input_token_limit_trues_up_from_actual_usage():
    # each request is estimated at ~1/4 of its body (about 30 tokens) but really uses 300
    # (input + cache creation): without the true-up all six would pass
    k = key(itpm_limit=1000)
    hdr = {"x-api-key": k["key"], "x-mock-input-tokens": "250", "x-mock-cache-creation": "50",
           "x-mock-cache-read": "5000"}
    rs = [gw.post("/v1/messages", MSG, hdr) for _ in range(6)]
    assert [r.status for r in rs] == [200, 200, 200, 200, 429, 429], [r.status for r in rs]
    # cache reads do not count; the 4th was admitted on 900 used + its estimate
    assert rs[3].headers["anthropic-ratelimit-input-tokens-limit"] == "1000"
    assert 0 < int(rs[3].headers["anthropic-ratelimit-input-tokens-remaining"]) < 100, rs[3].headers
    assert rs[4].headers["anthropic-ratelimit-input-tokens-remaining"] == "0"


def test_max_parallel_holds_under_concurrent_streams():
    k = key(max_parallel=2)
    body = dict(MSG, stream=True)
    hdr = {"x-api-key": k["key"], "x-mock-events": "8", "x-mock-interval-ms": "100"}
    rs = hammer(6, 1, body, hdr)
    assert sorted(r.status for r in rs) == [200, 200, 429, 429, 429, 429], [r.status for r in rs]
    refused = [r for r in rs if r.status == 429][0]
    assert "in flight" in refused.json()["error"]["message"]
    for r in rs:
        if r.status == 200:
            assert h.sse_events(r.body.decode())[-1][0] == "message_stop"
    # the slots come back when the streams end
    assert [gw.post("/v1/messages", body, hdr).status for _ in range(3)] == [200] * 3


def test_budget_refuses_once_spent_and_not_before():
    # sonnet: 100 in * $3 + 10 out * $15 per million = $0.00045 a request
    k = key(budget_usd=0.0005, budget_period="1d")
    hdr = {"x-api-key": k["key"], "x-mock-input-tokens": "100", "x-mock-output-tokens": "10"}
    assert gw.post("/v1/messages", MSG, hdr).status == 200   # spent 0
    assert gw.post("/v1/messages", MSG, hdr).status == 200   # spent 0.00045 < 0.0005
    r = gw.post("/v1/messages", MSG, hdr)                     # spent 0.0009
    assert r.status == 402, r
    assert r.json()["error"]["type"] == "billing_error"
    assert "budget" in r.json()["error"]["message"]
    # raising the budget lets it through again
    assert gw.admin("PATCH", "/admin/keys/" + k["id"], {"budget_usd": 1.0}).status == 200
    time.sleep(0.2)
    assert gw.post("/v1/messages", MSG, hdr).status == 200


def test_budget_counts_spend_recorded_before_start():
    # a key that already spent (rows in SQLite from an earlier run) is refused from the start
    import sqlite3
    k = key(budget_usd=0.01, budget_period="1M")
    db = sqlite3.connect(os.path.join(gw.data_dir, "gatehouse.db"))
    db.execute("INSERT INTO usage_log (request_id, started_at, key_id, endpoint, status, cost_usd)"
               " VALUES ('req_old', strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?, '/v1/messages', 200,"
               " 0.02)", (k["id"],))
    db.commit()
    db.close()
    r = gw.post("/v1/messages", MSG, {"x-api-key": k["key"]})
    assert r.status == 402, r


def test_budget_spend_is_seeded_at_start_up():
    # after a restart mid-period the master sums every budgeted key's spend before any worker
    # runs, so no request waits for that sum: the row deleted after start-up still counts,
    # which a worker summing on the first request would have missed
    import sqlite3
    g = h.Gateway(mock.url, workers=1)
    try:
        spender = g.admin("POST", "/admin/keys", {"name": "spender", "budget_usd": 0.01,
                                                  "budget_period": "1M"}).json()
        saver = g.admin("POST", "/admin/keys", {"name": "saver", "budget_usd": 5}).json()
        g.stop()
        path = os.path.join(g.data_dir, "gatehouse.db")
        db = sqlite3.connect(path)
        db.execute("INSERT INTO usage_log (request_id, started_at, key_id, endpoint, status,"
                   " cost_usd) VALUES ('req_before', strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?,"
                   " '/v1/messages', 200, 0.02)", (spender["id"],))
        db.commit()
        db.close()
        g.start()
        assert "budgets: seeded the current spend of 2 keys" in g.logs(), g.logs()[-2000:]
        db = sqlite3.connect(path)
        db.execute("DELETE FROM usage_log WHERE request_id = 'req_before'")
        db.commit()
        db.close()
        r = g.post("/v1/messages", MSG, {"x-api-key": spender["key"]})
        assert r.status == 402, r
        assert g.post("/v1/messages", MSG, {"x-api-key": saver["key"]}).status == 200
    finally:
        g.cleanup()


def test_refusals_are_logged_with_gateway_error_types():
    import sqlite3
    time.sleep(0.3)
    db = sqlite3.connect(os.path.join(gw.data_dir, "gatehouse.db"))
    kinds = {r[0] for r in db.execute("SELECT DISTINCT error_type FROM usage_log")}
    db.close()
    for want in ("rate_limited", "concurrency_limited", "budget_exceeded"):
        assert want in kinds, kinds
    r = gw.admin("GET", "/metrics")
    assert r.status == 200


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
