"""test_admin.py: the admin API of DESIGN.md section 6 against the real server: the token (from the
environment and from a generated admin.token file), providers and their keys, virtual keys with
create/patch/revoke/rotate, usage aggregates and logs over rows written straight into SQLite,
prices, /metrics, validation (400 naming the field, 404, 405, 409) and no secret in any answer or
log line."""
import json
import os
import re
import sqlite3
import stat
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ADMIN = "test-admin-token-for-admin-api-0001"
PKEY_A = "sk-ant-admin-test-provider-key-AAAA"
PKEY_B = "sk-ant-admin-test-provider-key-BBBB"
PKEY_C = "sk-ant-admin-test-provider-key-CCCC"
PROVIDER_SECRETS = [h.PROVIDER_KEY, PKEY_A, PKEY_B, PKEY_C]
MSG = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": ADMIN})
DB = os.path.join(gw.data_dir, "gatehouse.db")

answers = []       # (method, path, body text) of every admin answer, for the secrecy checks
vkey_secrets = {}  # secret -> index in answers of the one answer allowed to carry it


def admin(method, path, body=None, token=ADMIN, headers=None):
    hdrs = {} if token is None else {"authorization": "Bearer " + token}
    hdrs.update(headers or {})
    r = h.request(gw.admin_port, method, path, body, hdrs)
    answers.append((method, path, r.body.decode("utf-8", "replace")))
    return r


def q(path, **params):
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def expect_error(r, status, etype, *words):
    assert r.status == status, (status, r)
    e = r.json()
    assert e["type"] == "error" and e["error"]["type"] == etype, e
    for w in words:
        assert w in e["error"]["message"], (w, e)
    return e


def new_key(**fields):
    body = {"name": fields.pop("name", "key-%d" % len(vkey_secrets))}
    body.update(fields)
    r = admin("POST", "/admin/keys", body)
    assert r.status == 201, r
    k = r.json()
    vkey_secrets[k["key"]] = len(answers) - 1
    return k


def new_provider(name, **fields):
    body = {"name": name, "base_url": mock.url, "api_key": PKEY_C}
    body.update(fields)
    r = admin("POST", "/admin/providers", body)
    assert r.status == 201, r
    return r.json()


def client(secret):
    return gw.post("/v1/messages", MSG, {"x-api-key": secret})


def db():
    c = sqlite3.connect(DB, timeout=10)
    c.row_factory = sqlite3.Row
    return c


# ---- the token ----

def test_healthz_needs_no_token():
    assert admin("GET", "/healthz", token=None).status == 200
    assert admin("HEAD", "/healthz", token=None).status == 200


def test_missing_or_wrong_token_is_401():
    for tok, hdrs in ((None, None), ("wrong-token", None), (ADMIN + "x", None), ("", None),
                      (None, {"authorization": "Basic " + ADMIN}),
                      (None, {"x-api-key": ADMIN})):
        for method, path in (("GET", "/admin/providers"), ("GET", "/metrics"),
                             ("GET", "/admin/no-such-thing"), ("POST", "/admin/keys")):
            r = admin(method, path, {"name": "x"} if method == "POST" else None, token=tok,
                      headers=hdrs)
            expect_error(r, 401, "authentication_error")
            assert "bearer" in r.headers.get("www-authenticate", "").lower(), r.headers
    assert admin("GET", "/admin/providers", headers={}).status == 200
    assert admin("GET", "/admin/providers", token=None,
                 headers={"authorization": "bearer " + ADMIN}).status == 200


def test_virtual_key_is_never_an_admin_token():
    k = new_key(name="not-an-admin")
    r = admin("GET", "/admin/keys", token=k["key"])
    expect_error(r, 401, "authentication_error", "virtual key")
    assert k["key"] not in r.body.decode()


# ---- providers ----

def test_provider_create_get_list():
    r = admin("POST", "/admin/providers", {
        "name": "zeta", "base_url": mock.url + "//",
        "api_keys": [{"key": PKEY_A, "weight": 3}, {"key": PKEY_B}],
        "timeout_ms": 1234, "rpm_limit": 60, "itpm_limit": None, "otpm_limit": 5000,
        "max_retries": 2, "backoff_initial_ms": 100, "backoff_max_ms": 900})
    assert r.status == 201, r
    p = r.json()
    assert p["name"] == "zeta" and p["base_url"] == mock.url, p
    assert (p["timeout_ms"], p["rpm_limit"], p["itpm_limit"], p["otpm_limit"]) == \
        (1234, 60, None, 5000), p
    assert (p["max_retries"], p["backoff_initial_ms"], p["backoff_max_ms"]) == (2, 100, 900), p
    assert [(k["last4"], k["weight"]) for k in p["api_keys"]] == [("AAAA", 3), ("BBBB", 1)], p
    assert all(set(k) == {"id", "last4", "weight"} for k in p["api_keys"]), p
    assert p["created_at"].endswith("Z") and p["updated_at"].endswith("Z"), p
    assert "id" not in p or isinstance(p["id"], int)
    new_provider("alpha", rpm_limit=7)
    r = admin("GET", "/admin/providers")
    assert r.status == 200, r
    names = [x["name"] for x in r.json()["data"]]
    assert names == sorted(names) and {"alpha", "zeta", "anthropic"} <= set(names), names
    r = admin("GET", "/admin/providers/zeta")
    assert r.status == 200 and r.json() == p, (r, p)
    a = admin("GET", "/admin/providers/alpha").json()
    assert a["timeout_ms"] == 600000 and a["rpm_limit"] == 7, a
    assert [k["last4"] for k in a["api_keys"]] == ["CCCC"], a


def test_provider_keys_are_sealed_at_rest():
    c = db()
    try:
        for row in c.execute("SELECT key_sealed, key_last4 FROM provider_keys"):
            blob = bytes(row["key_sealed"])
            for s in PROVIDER_SECRETS:
                assert s.encode() not in blob
    finally:
        c.close()


def test_provider_validation():
    good = {"name": "v1", "base_url": "https://example.com", "api_key": PKEY_A}
    cases = [
        ({"base_url": "https://e.com", "api_key": PKEY_A}, "name"),
        (dict(good, name=""), "name"),
        (dict(good, name="has space"), "name"),
        (dict(good, name="slash/no"), "name"),
        (dict(good, name=5), "name"),
        ({"name": "v1", "api_key": PKEY_A}, "base_url"),
        (dict(good, base_url="ftp://example.com"), "base_url"),
        (dict(good, base_url="https://"), "base_url"),
        (dict(good, base_url=None), "base_url"),
        ({"name": "v1", "base_url": "https://e.com"}, "api_keys"),
        ({"name": "v1", "base_url": "https://e.com", "api_keys": []}, "api_keys"),
        ({"name": "v1", "base_url": "https://e.com", "api_keys": PKEY_A}, "api_keys"),
        ({"name": "v1", "base_url": "https://e.com", "api_keys": [PKEY_A]}, "api_keys[0]"),
        ({"name": "v1", "base_url": "https://e.com", "api_keys": [{"weight": 2}]}, "key"),
        ({"name": "v1", "base_url": "https://e.com", "api_keys": [{"key": ""}]}, "key"),
        ({"name": "v1", "base_url": "https://e.com",
          "api_keys": [{"key": PKEY_A}, {"key": PKEY_B, "weight": 0}]}, "weight"),
        ({"name": "v1", "base_url": "https://e.com",
          "api_keys": [{"key": PKEY_A, "weight": "2"}]}, "weight"),
        ({"name": "v1", "base_url": "https://e.com",
          "api_keys": [{"key": PKEY_A, "extra": 1}]}, "extra"),
        ({"name": "v1", "base_url": "https://e.com", "api_key": "has space " + PKEY_A},
         "api_key"),
        (dict(good, api_keys=[{"key": PKEY_B}]), "api_key"),
        (dict(good, api_key=None), "api_key"),
        (dict(good, rpm_limit=-1), "rpm_limit"),
        (dict(good, rpm_limit=1.5), "rpm_limit"),
        (dict(good, itpm_limit="10"), "itpm_limit"),
        (dict(good, otpm_limit=True), "otpm_limit"),
        (dict(good, timeout_ms=0), "timeout_ms"),
        (dict(good, timeout_ms=None), "timeout_ms"),
        (dict(good, max_retries=-1), "max_retries"),
        (dict(good, backoff_initial_ms="x"), "backoff_initial_ms"),
        (dict(good, backoff_max_ms=2 ** 40), "backoff_max_ms"),
        (dict(good, colour="blue"), "colour"),
    ]
    for body, field in cases:
        r = admin("POST", "/admin/providers", body)
        expect_error(r, 400, "invalid_request_error", field)
        for s in PROVIDER_SECRETS:
            assert s not in r.body.decode(), (body, r)
    e = expect_error(admin("POST", "/admin/providers", dict(good, rpm_limit=-1)), 400,
                     "invalid_request_error")
    assert "rpm_limit" in e["error"]["message"] and "non-negative integer or null" in \
        e["error"]["message"], e
    for raw in ('{"name": "v1",', "[1, 2]", '"str"', "", "{} {}", "{'a': 1}"):
        expect_error(admin("POST", "/admin/providers", raw if raw else b""), 400,
                     "invalid_request_error")
    assert admin("GET", "/admin/providers/v1").status == 404


def test_provider_duplicate_is_409():
    new_provider("dup")
    r = admin("POST", "/admin/providers", {"name": "dup", "base_url": mock.url, "api_key": PKEY_A})
    expect_error(r, 409, "invalid_request_error", "already exists", "dup")


def test_provider_patch():
    p = new_provider("patchme", rpm_limit=10)
    r = admin("PATCH", "/admin/providers/patchme",
              {"rpm_limit": None, "timeout_ms": 5000, "base_url": "http://127.0.0.1:9/x/",
               "max_retries": 1})
    assert r.status == 200, r
    got = r.json()
    assert got["rpm_limit"] is None and got["timeout_ms"] == 5000 and got["max_retries"] == 1
    assert got["base_url"] == "http://127.0.0.1:9/x", got
    assert got["api_keys"] == p["api_keys"] and got["created_at"] == p["created_at"], got
    # api_keys replaces the whole key set
    r = admin("PATCH", "/admin/providers/patchme",
              {"api_keys": [{"key": PKEY_A, "weight": 2}, {"key": PKEY_B, "weight": 5}]})
    assert r.status == 200, r
    ks = r.json()["api_keys"]
    assert [(k["last4"], k["weight"]) for k in ks] == [("AAAA", 2), ("BBBB", 5)], ks
    assert "CCCC" not in [k["last4"] for k in ks], ks
    assert admin("PATCH", "/admin/providers/patchme", {"name": "patchme"}).status == 200
    expect_error(admin("PATCH", "/admin/providers/patchme", {"name": "renamed"}), 400,
                 "invalid_request_error", "name")
    expect_error(admin("PATCH", "/admin/providers/patchme", {"otpm_limit": -5}), 400,
                 "invalid_request_error", "otpm_limit")
    expect_error(admin("PATCH", "/admin/providers/patchme", {"api_keys": []}), 400,
                 "invalid_request_error", "api_keys")
    expect_error(admin("PATCH", "/admin/providers/patchme", {"bogus": 1}), 400,
                 "invalid_request_error", "bogus")
    expect_error(admin("PATCH", "/admin/providers/nope", {"rpm_limit": 1}), 404,
                 "not_found_error", "nope")
    assert admin("GET", "/admin/providers/renamed").status == 404


def prov_betas_in_db(name):
    c = db()
    try:
        return tuple(c.execute("SELECT beta_add, beta_strip FROM providers WHERE name = ?",
                               (name,)).fetchone())
    finally:
        c.close()


def test_provider_betas():
    p = new_provider("betas", beta_add=["ctx-a-2026-01-01", "b.2_X"],
                     beta_strip=["files-api-2025-04-14"])
    assert p["beta_add"] == ["ctx-a-2026-01-01", "b.2_X"], p
    assert p["beta_strip"] == ["files-api-2025-04-14"], p
    assert prov_betas_in_db("betas") == ("ctx-a-2026-01-01,b.2_X", "files-api-2025-04-14")
    assert admin("GET", "/admin/providers/betas").json() == p
    listed = [x for x in admin("GET", "/admin/providers").json()["data"] if x["name"] == "betas"]
    assert listed == [p], listed
    # none given, null and [] all mean none, shown as []
    for name, fields in (("betas-none", {}), ("betas-null", {"beta_add": None, "beta_strip": None}),
                         ("betas-empty", {"beta_add": [], "beta_strip": []})):
        o = new_provider(name, **fields)
        assert o["beta_add"] == [] and o["beta_strip"] == [], o
        assert prov_betas_in_db(name) == (None, None), name
    # the limits are inclusive
    most = ["b%02d-%s" % (i, "x" * 60) for i in range(32)]
    o = new_provider("betas-most", beta_add=most, beta_strip=["y" * 64])
    assert o["beta_add"] == most and o["beta_strip"] == ["y" * 64], o
    # patch: one list replaced, the other untouched
    r = admin("PATCH", "/admin/providers/betas", {"beta_add": ["only-2026-02-02"]})
    assert r.status == 200, r
    got = r.json()
    assert got["beta_add"] == ["only-2026-02-02"], got
    assert got["beta_strip"] == ["files-api-2025-04-14"], got
    assert got["api_keys"] == p["api_keys"] and got["updated_at"] >= p["updated_at"], got
    assert prov_betas_in_db("betas") == ("only-2026-02-02", "files-api-2025-04-14")
    # other fields leave them alone
    got = admin("PATCH", "/admin/providers/betas", {"rpm_limit": 3}).json()
    assert got["beta_add"] == ["only-2026-02-02"] and got["beta_strip"] == \
        ["files-api-2025-04-14"], got
    # [] and null clear
    got = admin("PATCH", "/admin/providers/betas", {"beta_add": [], "beta_strip": None}).json()
    assert got["beta_add"] == [] and got["beta_strip"] == [], got
    assert prov_betas_in_db("betas") == (None, None)
    assert admin("GET", "/admin/providers/betas").json() == got
    got = admin("PATCH", "/admin/providers/betas", {"beta_strip": ["s1", "s2"]}).json()
    assert got["beta_add"] == [] and got["beta_strip"] == ["s1", "s2"], got
    assert prov_betas_in_db("betas") == (None, "s1,s2")


def test_provider_beta_validation():
    good = {"name": "bv", "base_url": "https://example.com", "api_key": PKEY_A}
    for f in ("beta_add", "beta_strip"):
        cases = [
            ("files-api-2025-04-14", f), ({"a": 1}, f), (5, f), (True, f),
            (["x"] * 33, f),
            ([""], f + "[0]"), ([1], f + "[0]"), ([None], f + "[0]"), ([["a"]], f + "[0]"),
            (["a,b"], f + "[0]"), (["a b"], f + "[0]"), ([" a"], f + "[0]"),
            (["a\tb"], f + "[0]"), (["a;b"], f + "[0]"), (["a/b"], f + "[0]"),
            (["caf\u00e9"], f + "[0]"), (["a\u0000b"], f + "[0]"), (["x" * 65], f + "[0]"),
            (["ok-1", "ok.2", "bad beta"], f + "[2]"),
        ]
        for value, field in cases:
            r = admin("POST", "/admin/providers", dict(good, **{f: value}))
            e = expect_error(r, 400, "invalid_request_error", "field '%s'" % field)
            for s in PROVIDER_SECRETS:
                assert s not in r.body.decode(), (value, r)
            if field != f:
                assert "must be" in e["error"]["message"], e
        e = expect_error(admin("POST", "/admin/providers", dict(good, **{f: ["a", "b", "c d"]})),
                         400, "invalid_request_error")
        assert e["error"]["message"].startswith("field '%s[2]': must be " % f), e
        e = expect_error(admin("POST", "/admin/providers", dict(good, **{f: ["x"] * 33})), 400,
                         "invalid_request_error", "field '%s'" % f, "32")
    assert admin("GET", "/admin/providers/bv").status == 404
    # a refused patch changes nothing
    before = new_provider("bv-patch", beta_add=["keep-1"], beta_strip=["keep-2"])
    for body, field in (({"beta_add": ["bad,beta"]}, "beta_add[0]"),
                        ({"beta_strip": "keep-3"}, "beta_strip"),
                        ({"beta_add": ["fine"], "beta_strip": ["ok", ""]}, "beta_strip[1]")):
        expect_error(admin("PATCH", "/admin/providers/bv-patch", body), 400,
                     "invalid_request_error", "field '%s'" % field)
    assert admin("GET", "/admin/providers/bv-patch").json() == before
    assert prov_betas_in_db("bv-patch") == ("keep-1", "keep-2")


def test_provider_beta_policy_reaches_upstream():
    # gh_beta_header: the client's list less the stripped betas, then the added ones, joined by ","
    new_provider("betapol", beta_add=["ctx-test-2026-01-01"], beta_strip=["files-api-2025-04-14"])
    body = dict(MSG, model="betapol/claude-sonnet-4-5")
    hdr = {"anthropic-beta": "files-api-2025-04-14,keep-me-2025-01-01"}
    mock.reset()
    r = gw.post("/v1/messages", body, hdr)
    assert r.status == 200, r
    got = mock.last()["headers"]
    assert got["x-api-key"] == PKEY_C, "not sent through provider betapol"
    assert got["anthropic-beta"] == "keep-me-2025-01-01,ctx-test-2026-01-01", got
    # a patch takes effect at once: with the policy cleared the client's header goes as sent
    assert admin("PATCH", "/admin/providers/betapol",
                 {"beta_add": None, "beta_strip": []}).status == 200
    mock.reset()
    r = gw.post("/v1/messages", body, hdr)
    assert r.status == 200, r
    got = mock.last()["headers"]
    assert got["anthropic-beta"] == "files-api-2025-04-14,keep-me-2025-01-01", got
    # an added beta the client already sent is not repeated
    assert admin("PATCH", "/admin/providers/betapol",
                 {"beta_add": ["keep-me-2025-01-01", "ctx-test-2026-01-01"]}).status == 200
    mock.reset()
    r = gw.post("/v1/messages", body, hdr)
    assert r.status == 200, r
    got = mock.last()["headers"]
    assert got["anthropic-beta"] == \
        "files-api-2025-04-14,keep-me-2025-01-01,ctx-test-2026-01-01", got


def test_provider_keys_add_and_delete():
    new_provider("keyed")
    r = admin("POST", "/admin/providers/keyed/keys", {"key": PKEY_B, "weight": 4})
    assert r.status == 201, r
    k = r.json()
    assert set(k) == {"id", "last4", "weight"} and k["last4"] == "BBBB" and k["weight"] == 4, k
    r = admin("POST", "/admin/providers/keyed/keys", {"key": PKEY_A})
    assert r.status == 201 and r.json()["weight"] == 1, r
    ids = [x["id"] for x in admin("GET", "/admin/providers/keyed").json()["api_keys"]]
    assert k["id"] in ids and len(ids) == 3, ids
    expect_error(admin("POST", "/admin/providers/keyed/keys", {"weight": 2}), 400,
                 "invalid_request_error", "key")
    expect_error(admin("POST", "/admin/providers/keyed/keys", {"key": PKEY_A, "weight": 0}), 400,
                 "invalid_request_error", "weight")
    expect_error(admin("POST", "/admin/providers/keyed/keys", {"key": PKEY_A, "x": 0}), 400,
                 "invalid_request_error", "x")
    expect_error(admin("POST", "/admin/providers/nope/keys", {"key": PKEY_A}), 404,
                 "not_found_error", "nope")
    r = admin("DELETE", "/admin/providers/keyed/keys/%d" % k["id"])
    assert r.status == 200 and r.json() == {"deleted": True, "id": k["id"]}, r
    expect_error(admin("DELETE", "/admin/providers/keyed/keys/%d" % k["id"]), 404,
                 "not_found_error")
    expect_error(admin("DELETE", "/admin/providers/keyed/keys/abc"), 404, "not_found_error")
    # a key of another provider is not found under this one
    other = admin("GET", "/admin/providers/zeta").json()["api_keys"][0]["id"]
    expect_error(admin("DELETE", "/admin/providers/keyed/keys/%d" % other), 404, "not_found_error")
    # deleting the last key is allowed
    for kid in [x["id"] for x in admin("GET", "/admin/providers/keyed").json()["api_keys"]]:
        assert admin("DELETE", "/admin/providers/keyed/keys/%d" % kid).status == 200
    assert admin("GET", "/admin/providers/keyed").json()["api_keys"] == []


def test_provider_delete():
    new_provider("doomed")
    r = admin("DELETE", "/admin/providers/doomed")
    assert r.status == 200 and r.json() == {"deleted": True, "name": "doomed"}, r
    expect_error(admin("GET", "/admin/providers/doomed"), 404, "not_found_error", "doomed")
    expect_error(admin("DELETE", "/admin/providers/doomed"), 404, "not_found_error")
    c = db()
    try:
        n = c.execute("SELECT count(*) FROM provider_keys WHERE provider_id NOT IN "
                      "(SELECT id FROM providers)").fetchone()[0]
    finally:
        c.close()
    assert n == 0


def test_method_not_allowed_and_unknown_paths():
    for method, path, allow in (("PUT", "/admin/providers", "POST"),
                                ("POST", "/admin/providers/zeta", "PATCH"),
                                ("GET", "/admin/providers/zeta/keys", "POST"),
                                ("PUT", "/admin/keys", "POST"),
                                ("PUT", "/admin/keys/vk_x", "PATCH"),
                                ("GET", "/admin/keys/vk_x/rotate", "POST"),
                                ("POST", "/admin/usage", "GET"),
                                ("DELETE", "/admin/usage/logs", "GET"),
                                ("POST", "/admin/prices", "GET"),
                                ("DELETE", "/admin/prices/m", "PUT"),
                                ("POST", "/metrics", "GET"),
                                ("POST", "/healthz", "GET")):
        r = admin(method, path, {} if method in ("POST", "PUT") else None)
        expect_error(r, 405, "invalid_request_error")
        assert allow in r.headers.get("allow", ""), (method, path, r.headers)
    for path in ("/admin", "/admin/nope", "/admin/providers/zeta/nope",
                 "/admin/providers/zeta/keys/1/x", "/admin/keys/a/b/c", "/admin/usage/x",
                 "/admin/prices/a/b", "/v1/messages", "/admin//providers"):
        expect_error(admin("GET", path), 404, "not_found_error")


# ---- virtual keys ----

KEY_FIELDS = {"id", "name", "last4", "models", "rpm_limit", "itpm_limit", "otpm_limit",
              "max_parallel", "budget_usd", "budget_period", "expires_at", "metadata", "revoked",
              "revoked_at", "created_at", "updated_at", "force_model", "aliases"}


def test_key_create():
    k = new_key(name="alice", models=["claude-sonnet-*", "claude-3-haiku-20240307"],
                rpm_limit=10, itpm_limit=1000, otpm_limit=200, max_parallel=2, budget_usd=12.5,
                expires_at="2099-12-31T00:00:00Z", metadata={"team": "a/b", "n": [1, 2]})
    assert set(k) == KEY_FIELDS | {"key"}, set(k) ^ (KEY_FIELDS | {"key"})
    assert re.fullmatch(r"vk_[0-9a-f]{16}", k["id"]), k["id"]
    assert k["key"].startswith("gh-vk-") and k["last4"] == k["key"][-4:], k
    assert k["models"] == ["claude-sonnet-*", "claude-3-haiku-20240307"], k
    assert (k["rpm_limit"], k["itpm_limit"], k["otpm_limit"], k["max_parallel"]) == \
        (10, 1000, 200, 2), k
    assert k["budget_usd"] == 12.5 and k["budget_period"] == "1M", k
    assert k["expires_at"] == "2099-12-31T00:00:00.000Z", k
    assert k["metadata"] == {"team": "a/b", "n": [1, 2]}, k
    assert k["revoked"] is False and k["revoked_at"] is None, k
    d = new_key(name="defaults")
    assert d["models"] is None and d["budget_usd"] is None and d["budget_period"] is None, d
    assert d["metadata"] is None and d["expires_at"] is None and d["rpm_limit"] is None, d
    assert new_key(name="none", models=[])["models"] == []
    w = new_key(name="weekly", budget_usd=3, budget_period="1w",
                expires_at="2099-01-01T02:30:00.123456+02:00")
    assert w["budget_period"] == "1w" and w["budget_usd"] == 3, w
    assert w["expires_at"] == "2099-01-01T00:30:00.123Z", w
    assert new_key(name="dateonly", expires_at="2099-06-01")["expires_at"] == \
        "2099-06-01T00:00:00.000Z"
    c = db()
    try:
        row = c.execute("SELECT * FROM virtual_keys WHERE id = ?", (k["id"],)).fetchone()
    finally:
        c.close()
    assert row["key_hash"] != k["key"] and len(row["key_hash"]) == 64, dict(row)
    assert k["key"] not in json.dumps(dict(row)), dict(row)
    # the new key works on the client API
    r = client(k["key"])
    assert r.status == 200, r


def test_key_validation():
    cases = [
        ({}, "name"), ({"name": ""}, "name"), ({"name": None}, "name"), ({"name": 3}, "name"),
        ({"name": "k", "models": "claude-*"}, "models"),
        ({"name": "k", "models": [1]}, "models"),
        ({"name": "k", "models": [""]}, "models"),
        ({"name": "k", "rpm_limit": -1}, "rpm_limit"),
        ({"name": "k", "itpm_limit": "5"}, "itpm_limit"),
        ({"name": "k", "otpm_limit": 2.5}, "otpm_limit"),
        ({"name": "k", "max_parallel": -3}, "max_parallel"),
        ({"name": "k", "budget_usd": -0.01}, "budget_usd"),
        ({"name": "k", "budget_usd": "5"}, "budget_usd"),
        ({"name": "k", "budget_period": "1y"}, "budget_period"),
        ({"name": "k", "budget_period": 1}, "budget_period"),
        ({"name": "k", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "k", "expires_at": "2026-02-30T00:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": "2026-12-31T25:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": 1767139200}, "expires_at"),
        ({"name": "k", "metadata": [1]}, "metadata"),
        ({"name": "k", "metadata": "x"}, "metadata"),
        ({"name": "k", "key": "gh-vk-chosen-by-client"}, "key"),
        ({"name": "k", "id": "vk_0000000000000000"}, "id"),
        ({"name": "k", "revoked": True}, "revoked"),
    ]
    c = db()
    before = c.execute("SELECT count(*) FROM virtual_keys").fetchone()[0]
    for body, field in cases:
        expect_error(admin("POST", "/admin/keys", body), 400, "invalid_request_error", field)
    expect_error(admin("POST", "/admin/keys", "{"), 400, "invalid_request_error")
    expect_error(admin("POST", "/admin/keys", "[]"), 400, "invalid_request_error")
    after = c.execute("SELECT count(*) FROM virtual_keys").fetchone()[0]
    c.close()
    assert before == after, "a refused create left a row"


def test_key_list_and_get_never_show_the_secret():
    k = new_key(name="listed")
    r = admin("GET", "/admin/keys")
    assert r.status == 200, r
    data = r.json()["data"]
    mine = [x for x in data if x["id"] == k["id"]]
    assert len(mine) == 1 and set(mine[0]) == KEY_FIELDS, mine
    assert all("key" not in x and "key_hash" not in x for x in data), data
    one = admin("GET", "/admin/keys/" + k["id"])
    assert one.status == 200 and one.json() == mine[0], one
    body = r.body.decode() + one.body.decode()
    for secret in vkey_secrets:
        assert secret not in body
    expect_error(admin("GET", "/admin/keys/vk_ffffffffffffffff"), 404, "not_found_error",
                 "vk_ffffffffffffffff")


def test_key_patch():
    k = new_key(name="patchy", rpm_limit=5, budget_usd=1)
    r = admin("PATCH", "/admin/keys/" + k["id"],
              {"name": "patched", "rpm_limit": None, "itpm_limit": 77, "models": [],
               "metadata": {"x": 1}, "expires_at": "2098-01-01T00:00:00Z"})
    assert r.status == 200, r
    p = r.json()
    assert "key" not in p and p["name"] == "patched" and p["rpm_limit"] is None, p
    assert p["itpm_limit"] == 77 and p["models"] == [] and p["metadata"] == {"x": 1}, p
    assert p["expires_at"] == "2098-01-01T00:00:00.000Z" and p["budget_usd"] == 1, p
    assert p["created_at"] == k["created_at"] and p["updated_at"] >= k["updated_at"], p
    r = admin("PATCH", "/admin/keys/" + k["id"],
              {"models": None, "metadata": None, "expires_at": None, "budget_period": "1d"})
    p = r.json()
    assert (p["models"], p["metadata"], p["expires_at"], p["budget_period"]) == \
        (None, None, None, "1d"), p
    p = admin("PATCH", "/admin/keys/" + k["id"], {"budget_usd": None}).json()
    assert p["budget_usd"] is None and p["budget_period"] is None, p
    p = admin("PATCH", "/admin/keys/" + k["id"], {"budget_usd": 9}).json()
    assert p["budget_usd"] == 9 and p["budget_period"] == "1M", p
    expect_error(admin("PATCH", "/admin/keys/" + k["id"], {"max_parallel": -1}), 400,
                 "invalid_request_error", "max_parallel")
    expect_error(admin("PATCH", "/admin/keys/" + k["id"], {"name": ""}), 400,
                 "invalid_request_error", "name")
    expect_error(admin("PATCH", "/admin/keys/" + k["id"], {"nope": 1}), 400,
                 "invalid_request_error", "nope")
    expect_error(admin("PATCH", "/admin/keys/vk_0000000000000000", {"rpm_limit": 1}), 404,
                 "not_found_error")


def test_key_revoke():
    k = new_key(name="revokable")
    assert client(k["key"]).status == 200
    r = admin("DELETE", "/admin/keys/" + k["id"])
    assert r.status == 200, r
    v = r.json()
    assert v["revoked"] is True and v["revoked_at"] and "key" not in v, v
    assert admin("GET", "/admin/keys/" + k["id"]).json()["revoked"] is True
    again = admin("DELETE", "/admin/keys/" + k["id"]).json()
    assert again["revoked_at"] == v["revoked_at"], (again, v)
    expect_error(admin("PATCH", "/admin/keys/" + k["id"], {"rpm_limit": 1}), 409,
                 "invalid_request_error", "revoked")
    expect_error(admin("POST", "/admin/keys/%s/rotate" % k["id"]), 409,
                 "invalid_request_error", "revoked")
    expect_error(admin("DELETE", "/admin/keys/vk_0000000000000000"), 404, "not_found_error")
    h.wait_for(lambda: client(k["key"]).status == 401, timeout=5, what="revoked key refused")


def test_key_rotate():
    k = new_key(name="rotor")
    assert client(k["key"]).status == 200
    r = admin("POST", "/admin/keys/%s/rotate" % k["id"])
    assert r.status == 200, r
    n = r.json()
    vkey_secrets[n["key"]] = len(answers) - 1
    assert n["id"] == k["id"] and n["key"] != k["key"] and n["key"].startswith("gh-vk-"), n
    assert n["last4"] == n["key"][-4:] and set(n) == KEY_FIELDS | {"key"}, n
    h.wait_for(lambda: client(k["key"]).status == 401, timeout=5, what="old secret refused")
    assert client(n["key"]).status == 200
    expect_error(admin("POST", "/admin/keys/vk_0000000000000000/rotate"), 404, "not_found_error")


# ---- usage ----

USAGE_ROWS = []


def insert_usage(rows):
    c = db()
    try:
        for r in rows:
            c.execute(
                "INSERT INTO usage_log (request_id, started_at, key_id, endpoint, model_requested,"
                " provider, model, status, error_type, input_tokens, output_tokens,"
                " cache_creation_input_tokens, cache_read_input_tokens, cost_usd, latency_ms,"
                " ttft_ms, attempts, stream) VALUES (?, ?, ?, '/v1/messages', ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?, 10, NULL, 1, 0)",
                (r["request_id"], r["started_at"], r["key_id"], r["model"], r["provider"],
                 r["model"], r["status"], r["error_type"], r["input_tokens"], r["output_tokens"],
                 r["cache_creation_input_tokens"], r["cache_read_input_tokens"], r["cost_usd"]))
        c.commit()
    finally:
        c.close()


def make_usage_rows():
    """Rows in March 2020 (no real request is that old) for two keys, several models and days."""
    if USAGE_ROWS:
        return USAGE_ROWS
    k1 = new_key(name="usage-one")
    k2 = new_key(name="usage-two")
    models = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]
    provs = ["anthropic", "zeta"]
    i = 0
    for day in (1, 2, 3):
        for hour in (0, 11, 23):
            for kid in (k1["id"], k2["id"], "vk_unknownkey0000"):
                i += 1
                status = (200, 429, 500, 200)[i % 4]
                USAGE_ROWS.append({
                    "request_id": "req_test_admin_%04d" % i,
                    "started_at": "2020-03-%02dT%02d:%02d:07.%03dZ" % (day, hour, i % 60, i),
                    "key_id": kid, "model": models[i % 3], "provider": provs[i % 2],
                    "status": status, "error_type": None if status == 200 else "api_error",
                    "input_tokens": 100 * i, "output_tokens": 7 * i,
                    "cache_creation_input_tokens": i % 5, "cache_read_input_tokens": 3 * i,
                    "cost_usd": round(0.001 * i * i + 0.0001 * (i % 7), 7)})
    insert_usage(USAGE_ROWS)
    return USAGE_ROWS


SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
        "cache_read_input_tokens", "cost_usd")


def expected(rows, groups, names):
    out = {}
    for r in rows:
        key = []
        for g in groups:
            if g == "key":
                key += [r["key_id"], names.get(r["key_id"])]
            elif g == "day":
                key.append(r["started_at"][:10])
            else:
                key.append(r[g])
        s = out.setdefault(tuple(key), dict.fromkeys(SUMS, 0))
        s["requests"] += 1
        s["errors"] += 1 if r["status"] >= 400 or r["error_type"] is not None else 0
        for t in SUMS[2:]:
            s[t] += r[t]
    for s in out.values():
        s["cost_usd"] = round(s["cost_usd"], 6)
    return out


def check_report(params, rows, names):
    r = admin("GET", q("/admin/usage", **params))
    assert r.status == 200, (params, r)
    rep = r.json()
    groups = [g for g in params.get("group_by", "").split(",") if g]
    assert rep["group_by"] == groups, rep
    want = expected(rows, groups, names)
    got = {}
    cols = []
    for g in groups:
        cols += ["key_id", "key_name"] if g == "key" else [g]
    for d in rep["data"]:
        assert set(d) == set(cols) | set(SUMS), d
        got[tuple(d[c] for c in cols)] = {s: d[s] for s in SUMS}
    assert set(got) == set(want), (params, sorted(map(str, got)), sorted(map(str, want)))
    for key, s in want.items():
        for f in SUMS:
            assert abs(got[key][f] - s[f]) < 1e-6, (params, key, f, got[key][f], s[f])
    costs = [d["cost_usd"] for d in rep["data"]]
    assert costs == sorted(costs, reverse=True), costs
    tot = expected(rows, [], names).get((), dict.fromkeys(SUMS, 0))
    for f in SUMS:
        assert abs(rep["total"][f] - tot[f]) < 1e-6, (params, f, rep["total"], tot)
    return rep


def test_usage_report():
    rows = make_usage_rows()
    c = db()
    names = dict(c.execute("SELECT id, name FROM virtual_keys").fetchall())
    c.close()
    window = {"from": "2020-03-01", "to": "2020-03-04"}
    k1 = rows[0]["key_id"]
    for gb in ("", "key", "model", "provider", "day", "key,model", "model,provider,day",
               "key,model,provider,day", "day,key"):
        p = dict(window, group_by=gb) if gb else dict(window)
        check_report(p, rows, names)
    # from inclusive, to exclusive, timestamps too
    sub = [r for r in rows if "2020-03-01T11:00:00" <= r["started_at"] < "2020-03-03T00:00:00"]
    rep = check_report({"from": "2020-03-01T11:00:00Z", "to": "2020-03-03", "group_by": "day"},
                       sub, names)
    assert rep["from"] == "2020-03-01T11:00:00.000Z" and rep["to"] == "2020-03-03T00:00:00.000Z"
    sub = [r for r in rows if r["key_id"] == k1]
    check_report(dict(window, key_id=k1, group_by="model"), sub, names)
    # an empty window
    rep = check_report({"from": "2019-01-01", "to": "2019-01-02", "group_by": "key"}, [], names)
    assert rep["data"] == [] and rep["total"]["requests"] == 0, rep
    rep = check_report({"from": "2019-01-01", "to": "2019-01-02"}, [], names)
    assert rep["data"] == [], rep
    for params, word in (({"group_by": "key,colour"}, "colour"), ({"group_by": "key,key"}, "key"),
                         ({"from": "yesterday"}, "from"), ({"to": "2020-13-01"}, "to"),
                         ({"sort": "cost"}, "sort")):
        expect_error(admin("GET", q("/admin/usage", **params)), 400, "invalid_request_error", word)


def test_usage_logs():
    rows = make_usage_rows()
    k1 = rows[0]["key_id"]
    mine = sorted((r for r in rows if r["key_id"] == k1), key=lambda r: r["request_id"],
                  reverse=True)
    r = admin("GET", q("/admin/usage/logs", key_id=k1, limit=4))
    assert r.status == 200, r
    page = r.json()
    assert page["has_more"] is True and len(page["data"]) == 4, page
    assert page["next_before"] == page["data"][-1]["id"], page
    cols = {"id", "request_id", "started_at", "key_id", "endpoint", "model_requested", "provider",
            "model", "status", "error_type", "input_tokens", "output_tokens",
            "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd", "latency_ms",
            "ttft_ms", "attempts", "stream"}
    assert cols <= set(page["data"][0]), set(page["data"][0])
    seen = list(page["data"])
    while page["has_more"]:
        page = admin("GET", q("/admin/usage/logs", key_id=k1, limit=4,
                              before=page["next_before"])).json()
        seen += page["data"]
    ids = [x["id"] for x in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), ids
    assert [x["request_id"] for x in seen] == [m["request_id"] for m in mine], seen
    first = seen[0]
    want = mine[0]
    for f in ("started_at", "key_id", "model", "provider", "status", "error_type", "input_tokens",
              "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert first[f] == want[f], (f, first, want)
    assert abs(first["cost_usd"] - want["cost_usd"]) < 1e-12
    # the recorder may still be writing rows of earlier requests: count before and after, and
    # accept any total in between
    c = db()
    before = c.execute("SELECT count(*) FROM usage_log").fetchone()[0]
    all_rows = admin("GET", "/admin/usage/logs").json()
    after = c.execute("SELECT count(*) FROM usage_log").fetchone()[0]
    c.close()
    assert min(50, before) <= len(all_rows["data"]) <= min(50, after), (len(all_rows["data"]),
                                                                        before, after)
    assert all_rows["has_more"] in ((before > 50), (after > 50)), all_rows["has_more"]
    assert admin("GET", q("/admin/usage/logs", limit=1000)).status == 200
    last = admin("GET", q("/admin/usage/logs", key_id=k1, limit=1000)).json()
    assert last["has_more"] is False and len(last["data"]) == len(mine), last
    assert admin("GET", q("/admin/usage/logs", key_id="vk_none")).json() == \
        {"data": [], "has_more": False, "next_before": None}
    for params, word in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                         ({"limit": "x"}, "limit"), ({"before": "x"}, "before"),
                         ({"before": -1}, "before"), ({"offset": 3}, "offset")):
        expect_error(admin("GET", q("/admin/usage/logs", **params)), 400,
                     "invalid_request_error", word)


# ---- prices ----

PRICE = {"input_per_mtok": 1.5, "output_per_mtok": 7.25, "cache_write_per_mtok": 1.875,
         "cache_read_per_mtok": 0.15}


def test_prices():
    r = admin("GET", "/admin/prices")
    assert r.status == 200, r
    data = r.json()["data"]
    models = [p["model"] for p in data]
    assert models == sorted(models) and "claude-sonnet-4-5*" in models, models
    son = admin("GET", "/admin/prices/claude-sonnet-4-5%2A")
    assert son.status == 200, son
    s = son.json()
    assert s["model"] == "claude-sonnet-4-5*" and s["input_per_mtok"] == 3.0, s
    assert s["output_per_mtok"] == 15 and s["cache_read_per_mtok"] == 0.3, s
    assert admin("GET", "/admin/prices/claude-sonnet-4-5*").json() == s
    expect_error(admin("GET", "/admin/prices/no-such-model"), 404, "not_found_error",
                 "no-such-model")
    r = admin("PUT", "/admin/prices/team%2Fcustom-model*", dict(PRICE, max_input_tokens=100000))
    assert r.status == 200, r
    p = r.json()
    assert p["model"] == "team/custom-model*" and p["max_input_tokens"] == 100000, p
    for f, v in PRICE.items():
        assert p[f] == v, (f, p)
    # upsert replaces the whole row
    r = admin("PUT", "/admin/prices/team%2Fcustom-model*", dict(PRICE, input_per_mtok=0))
    p2 = r.json()
    assert r.status == 200 and p2["input_per_mtok"] == 0 and p2["max_input_tokens"] is None, p2
    assert admin("GET", "/admin/prices/team%2Fcustom-model*").json() == p2
    assert "team/custom-model*" in [x["model"] for x in admin("GET", "/admin/prices").json()["data"]]
    c = db()
    row = c.execute("SELECT * FROM model_prices WHERE model = 'team/custom-model*'").fetchone()
    c.close()
    assert row["output_per_mtok"] == 7.25 and row["input_per_mtok"] == 0, dict(row)
    for f in PRICE:
        body = dict(PRICE)
        del body[f]
        expect_error(admin("PUT", "/admin/prices/x", body), 400, "invalid_request_error", f)
        expect_error(admin("PUT", "/admin/prices/x", dict(PRICE, **{f: -1})), 400,
                     "invalid_request_error", f)
        expect_error(admin("PUT", "/admin/prices/x", dict(PRICE, **{f: "1"})), 400,
                     "invalid_request_error", f)
    expect_error(admin("PUT", "/admin/prices/x", dict(PRICE, max_input_tokens=0)), 400,
                 "invalid_request_error", "max_input_tokens")
    expect_error(admin("PUT", "/admin/prices/x", dict(PRICE, currency="EUR")), 400,
                 "invalid_request_error", "currency")
    expect_error(admin("PUT", "/admin/prices/a*b", PRICE), 400, "invalid_request_error", "*")
    expect_error(admin("PUT", "/admin/prices/x", "nope"), 400, "invalid_request_error")
    assert admin("GET", "/admin/prices/x").status == 404


# ---- metrics ----

def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert not line or line.startswith("# HELP ") or line.startswith("# TYPE "), line
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+]+)', line)
        assert m, "bad metrics line: %r" % line
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def test_metrics():
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    rows = []
    for i, (status, ago) in enumerate(((200, 1), (200, 60), (429, 5), (200, 60 * 30))):
        t = (now - timedelta(minutes=ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        rows.append({"request_id": "req_test_admin_metrics_%d" % i, "started_at": t,
                     "key_id": None, "model": "m", "provider": "metrics\"prov", "status": status,
                     "error_type": None, "input_tokens": 1, "output_tokens": 1,
                     "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                     "cost_usd": 0})
    insert_usage(rows)
    r = admin("GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    m = parse_metrics(r.body.decode())
    for name in ("gatehouse_usage_records_published_total", "gatehouse_usage_records_written_total",
                 "gatehouse_usage_records_dropped_total", "gatehouse_config_epoch",
                 "gatehouse_providers"):
        assert (name, ()) in m, (name, m)
    c = db()
    active, revoked = c.execute("SELECT sum(revoked_at IS NULL), sum(revoked_at IS NOT NULL) "
                                "FROM virtual_keys").fetchone()
    nprov = c.execute("SELECT count(*) FROM providers").fetchone()[0]
    c.close()
    assert m[("gatehouse_virtual_keys", (("state", "active"),))] == active, m
    assert m[("gatehouse_virtual_keys", (("state", "revoked"),))] == revoked, m
    assert m[("gatehouse_providers", ())] == nprov
    prov = 'metrics\\"prov'
    assert m[("gatehouse_requests_24h", (("provider", prov), ("status", "200")))] == 2, m
    assert m[("gatehouse_requests_24h", (("provider", prov), ("status", "429")))] == 1, m
    # every admin write bumps the epoch
    e0 = m[("gatehouse_config_epoch", ())]
    new_key(name="epoch-bumper")
    m2 = parse_metrics(admin("GET", "/metrics").body.decode())
    assert m2[("gatehouse_config_epoch", ())] > e0, (e0, m2)


# ---- secrets and the token file ----

def test_no_secret_in_any_answer_or_log():
    assert len(answers) > 100, len(answers)
    if getattr(gw, "key", None):
        vkey_secrets.setdefault(gw.key, -1)  # the harness's own key: in none of these answers
    for i, (method, path, body) in enumerate(answers):
        for s in PROVIDER_SECRETS:
            assert s not in body, (method, path, body[:200])
        assert ADMIN not in body, (method, path)
        for secret, at in vkey_secrets.items():
            assert secret not in body or i == at, (method, path, body[:200])
    logs = gw.logs()
    for s in PROVIDER_SECRETS + list(vkey_secrets) + [ADMIN]:
        assert s not in logs, s


def test_generated_token_file():
    # an empty GATEHOUSE_ADMIN_TOKEN counts as unset, so the token file is generated
    g = h.Gateway(mock.url, workers=1, env={"GATEHOUSE_ADMIN_TOKEN": ""}, auto_key=False)
    try:
        path = os.path.join(g.data_dir, "admin.token")
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        token = open(path).read().strip()
        assert len(token) >= 32 and not token.startswith("gh-vk-"), len(token)
        hdr = {"authorization": "Bearer " + token}
        assert h.request(g.admin_port, "GET", "/admin/providers", None, hdr).status == 200
        assert h.request(g.admin_port, "GET", "/admin/providers", None,
                         {"authorization": "Bearer " + ADMIN}).status == 401
        assert token not in g.logs() and path in g.logs(), g.logs()
        # a restart reuses the file, and the token keeps working
        g.stop()
        g.start()
        assert open(path).read().strip() == token
        assert h.request(g.admin_port, "GET", "/admin/keys", None, hdr).status == 200
        # the environment wins over the file and replaces the stored hash
        g.stop()
        g.env["GATEHOUSE_ADMIN_TOKEN"] = "env-token-overrides-the-file-000"
        g.start()
        assert h.request(g.admin_port, "GET", "/admin/keys", None, hdr).status == 401
        assert h.request(g.admin_port, "GET", "/admin/keys", None,
                         {"authorization": "Bearer env-token-overrides-the-file-000"}).status == 200
        logs = g.logs()
        assert token not in logs and "env-token-overrides-the-file-000" not in logs
    finally:
        g.cleanup()


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
