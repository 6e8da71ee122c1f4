"""test_governance.py: virtual keys end to end: the three auth headers, allowlists, revocation
across workers, usage rows that match the mock's token counts, no plaintext secrets at rest or in
logs, and no usage row lost or doubled when a worker is killed or the gateway stops."""
import os
import signal
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ADMIN = "test-admin-token-0123456789abcdef"
mock = h.Mock()
gw = h.Gateway(mock.url, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": ADMIN})
DB = os.path.join(gw.data_dir, "gatehouse.db")
MSG = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
created_secrets = []


def admin(method, path, body=None, token=ADMIN):
    return h.request(gw.admin_port, method, path, body, {"authorization": "Bearer " + token})


def new_key(**fields):
    body = {"name": fields.pop("name", "k%d" % len(created_secrets))}
    body.update(fields)
    r = admin("POST", "/admin/keys", body)
    assert r.status == 201, r
    k = r.json()
    created_secrets.append(k["key"])
    return k


def rows(where="1=1", args=()):
    db = sqlite3.connect(DB)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage_log WHERE " + where, args)]
    finally:
        db.close()


def wait_rows(where, args, n, timeout=5):
    h.wait_for(lambda: len(rows(where, args)) >= n, timeout=timeout, what="%d usage rows" % n)
    return rows(where, args)


def test_three_auth_headers_and_refusals():
    k = new_key()
    for hdr in ({"x-api-key": k["key"]}, {"authorization": "Bearer " + k["key"]},
                {"authorization": "Token " + k["key"]}):
        r = gw.post("/v1/messages", MSG, hdr)
        assert r.status == 200, (hdr, r)
    for hdr, why in (({}, "missing"), ({"x-api-key": "gh-vk-nope"}, "invalid"),
                     ({"authorization": "Bearer " + k["key"] + "x"}, "invalid"),
                     ({"authorization": "Basic " + k["key"]}, "missing")):
        r = h.request(gw.port, "POST", "/v1/messages", MSG, hdr)
        assert r.status == 401, (hdr, r)
        e = r.json()
        assert e["type"] == "error" and e["error"]["type"] == "authentication_error", e
        assert why in e["error"]["message"], e
        assert k["key"] not in r.body.decode()


def test_allowlist():
    k = new_key(models=["claude-sonnet-*", "claude-3-haiku-20240307"])
    ok = gw.post("/v1/messages", dict(MSG, model="claude-sonnet-4-5-20250929"), {"x-api-key": k["key"]})
    assert ok.status == 200, ok
    mock.reset()
    r = gw.post("/v1/messages", dict(MSG, model="claude-opus-4-5"), {"x-api-key": k["key"]})
    assert r.status == 403, r
    assert r.json()["error"]["type"] == "permission_error"
    assert "claude-opus-4-5" in r.json()["error"]["message"]
    assert mock.requests() == [], "a denied request reached upstream"
    none = new_key(models=[])
    r = gw.post("/v1/messages", MSG, {"x-api-key": none["key"]})
    assert r.status == 403, r
    row = wait_rows("key_id = ? AND status = 403", (k["id"],), 1)[0]
    assert row["error_type"] == "model_not_allowed", row


def test_revoke_takes_effect_in_every_worker_within_a_second():
    k = new_key()
    for _ in range(6):
        assert gw.post("/v1/messages", MSG, {"x-api-key": k["key"]}).status == 200
    r = admin("DELETE", "/admin/keys/" + k["id"])
    assert r.status == 200, r
    t0 = time.time()
    time.sleep(1.0)
    statuses = [gw.post("/v1/messages", MSG, {"x-api-key": k["key"]}).status for _ in range(20)]
    assert statuses == [401] * 20, statuses
    assert time.time() - t0 < 10
    r = gw.post("/v1/messages", MSG, {"x-api-key": k["key"]})
    assert "revoked" in r.json()["error"]["message"]


def test_rotate_old_secret_stops_working():
    k = new_key()
    assert gw.post("/v1/messages", MSG, {"x-api-key": k["key"]}).status == 200
    r = admin("POST", "/admin/keys/%s/rotate" % k["id"])
    assert r.status == 200, r
    new = r.json()["key"]
    created_secrets.append(new)
    assert new != k["key"]
    time.sleep(0.2)
    assert gw.post("/v1/messages", MSG, {"x-api-key": k["key"]}).status == 401
    assert gw.post("/v1/messages", MSG, {"x-api-key": new}).status == 200


def test_expired_key_refused():
    k = new_key(expires_at="2001-01-01T00:00:00Z")
    r = gw.post("/v1/messages", MSG, {"x-api-key": k["key"]})
    assert r.status == 401 and "expired" in r.json()["error"]["message"], r


def test_usage_rows_match_the_mock_exactly():
    k = new_key()
    tok = {"x-mock-input-tokens": "123", "x-mock-output-tokens": "45",
           "x-mock-cache-creation": "1000", "x-mock-cache-read": "20000", "x-api-key": k["key"]}
    r1 = gw.post("/v1/messages", MSG, tok)
    r2 = gw.post("/v1/messages", dict(MSG, stream=True), dict(tok, **{"x-mock-events": "4"}))
    assert r1.status == 200 and r2.status == 200
    got = {r["request_id"]: r for r in wait_rows("key_id = ?", (k["id"],), 2)}
    for resp, stream in ((r1, 0), (r2, 1)):
        row = got[resp.headers["x-gatehouse-request-id"]]
        assert row["input_tokens"] == 123, row
        assert row["output_tokens"] == 45, row
        assert row["cache_creation_input_tokens"] == 1000, row
        assert row["cache_read_input_tokens"] == 20000, row
        assert row["stream"] == stream
        assert row["status"] == 200 and row["error_type"] is None
        assert row["endpoint"] == "/v1/messages"
        assert row["model_requested"] == "claude-sonnet-4-5" and row["model"] == "claude-sonnet-4-5"
        assert row["provider"] == "anthropic"
        assert row["attempts"] == 1
        assert row["upstream_request_id"].startswith("req_mock_")
        assert row["latency_ms"] >= 0 and row["ttft_ms"] is not None
        assert row["started_at"].endswith("Z") and len(row["started_at"]) == 24, row["started_at"]
        # sonnet list prices: 3 in, 15 out, 3.75 cache write, 0.30 cache read per million
        want = (123 * 3 + 45 * 15 + 1000 * 3.75 + 20000 * 0.30) / 1e6
        assert abs(row["cost_usd"] - want) < 1e-9, (row["cost_usd"], want)


def test_errors_are_logged_too():
    k = new_key()
    r = gw.post("/v1/messages", MSG, {"x-api-key": k["key"], "x-mock-scenario": "529"})
    assert r.status == 529
    r = gw.post("/v1/messages", dict(MSG, stream=True),
                {"x-api-key": k["key"], "x-mock-scenario": "sse-error"})
    assert r.status == 200
    got = wait_rows("key_id = ?", (k["id"],), 2)
    by_status = {row["status"]: row for row in got}
    assert by_status[529]["error_type"] == "overloaded_error", got
    assert by_status[200]["error_type"] == "overloaded_error", got
    r = gw.post("/v1/messages", MSG, {"x-api-key": "gh-vk-unknown"})
    assert r.status == 401, r
    rid = r.headers["x-gatehouse-request-id"]
    row = wait_rows("request_id = ?", (rid,), 1)[0]
    assert row["status"] == 401 and row["key_id"] is None


def test_count_tokens_recorded_without_cost():
    k = new_key()
    r = gw.post("/v1/messages/count_tokens", {"model": "claude-sonnet-4-5", "messages": []},
                {"x-api-key": k["key"]})
    assert r.status == 200, r
    row = wait_rows("key_id = ?", (k["id"],), 1)[0]
    assert row["endpoint"] == "/v1/messages/count_tokens"
    assert row["cost_usd"] == 0 and row["input_tokens"] == 0


def test_no_plaintext_secrets_at_rest_or_in_logs():
    time.sleep(0.3)
    blobs = b""
    for name in os.listdir(gw.data_dir):
        p = os.path.join(gw.data_dir, name)
        if os.path.isfile(p) and name != "admin.token":
            blobs += open(p, "rb").read()
    logs = gw.logs().encode()
    for secret in [h.PROVIDER_KEY, ADMIN] + created_secrets:
        assert secret.encode() not in blobs, "secret found in the data dir"
        assert secret.encode() not in logs, "secret found in the logs"
    for name in ("gatehouse.db", "master.key"):
        mode = os.stat(os.path.join(gw.data_dir, name)).st_mode & 0o777
        assert mode & 0o077 == 0, (name, oct(mode))


def test_sigkill_under_load_every_completed_request_has_one_row():
    k = new_key()
    done_ids, errors, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                r = gw.post("/v1/messages", MSG, {"x-api-key": k["key"]}, timeout=10)
                if r.status == 200:
                    done_ids.append(r.headers["x-gatehouse-request-id"])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
    ts = [threading.Thread(target=load) for _ in range(6)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    os.kill(gw.workers()[0], signal.SIGKILL)
    time.sleep(0.7)
    stop.set()
    for t in ts:
        t.join()
    assert len(done_ids) > 20, len(done_ids)
    h.wait_for(lambda: len(rows("key_id = ? AND status = 200", (k["id"],))) >= len(done_ids),
               timeout=5, what="rows for every completed request")
    got = rows("key_id = ? AND status = 200", (k["id"],))
    ids = [r["request_id"] for r in got]
    assert len(ids) == len(set(ids)), "a row was written twice"
    missing = set(done_ids) - set(ids)
    assert not missing, "completed requests without a row: %d" % len(missing)


def test_sigterm_flushes_every_row():
    g = h.Gateway(mock.url, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": ADMIN})
    try:
        r = h.request(g.admin_port, "POST", "/admin/keys", {"name": "flush"},
                      {"authorization": "Bearer " + ADMIN})
        key = r.json()["key"]
        ids = []
        for _ in range(30):
            r = g.post("/v1/messages", MSG, {"x-api-key": key})
            ids.append(r.headers["x-gatehouse-request-id"])
        assert g.stop() == 0
        db = sqlite3.connect(os.path.join(g.data_dir, "gatehouse.db"))
        got = [x[0] for x in db.execute("SELECT request_id FROM usage_log")]
        db.close()
        assert sorted(set(got) & set(ids)) == sorted(ids), (len(got), len(ids))
    finally:
        g.cleanup()


def test_wrong_or_missing_master_key_refuses_to_start():
    g = h.Gateway(mock.url, workers=1)
    try:
        g.stop()
        db_before = open(os.path.join(g.data_dir, "gatehouse.db"), "rb").read()
        other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        for env, what in (({"GATEHOUSE_MASTER_KEY": other}, "wrong key in the environment"),
                          ({}, "master.key missing")):
            if not env:
                os.rename(os.path.join(g.data_dir, "master.key"),
                          os.path.join(g.data_dir, "master.key.bak"))
            e = dict(g.env)
            e.update(env)
            p = h.subprocess.run(g.args, env=e, capture_output=True, text=True, timeout=20)
            assert p.returncode != 0, what
            assert "master key" in p.stderr and "GATEHOUSE_MASTER_KEY" in p.stderr, p.stderr
            assert h.PROVIDER_KEY not in p.stderr and other not in p.stderr
        # nothing was rewritten with the wrong key
        assert open(os.path.join(g.data_dir, "gatehouse.db"), "rb").read() == db_before
        os.remove(os.path.join(g.data_dir, "master.key"))
        os.rename(os.path.join(g.data_dir, "master.key.bak"), os.path.join(g.data_dir, "master.key"))
        g.start()
        assert g.post("/v1/messages", MSG).status == 200
    finally:
        g.cleanup()


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
