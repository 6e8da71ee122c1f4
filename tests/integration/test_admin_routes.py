"""test_admin_routes.py: the admin API's /admin/routes resource (DESIGN.md section 6) and the model
rewrites of virtual keys (force_model, aliases) against the real server: create, list, get, PUT
create and replace, delete, validation naming the field (targets[i].provider...), 404, 405, 409,
the admin token, what lands in SQLite, and the configuration epoch moving after every write."""
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ADMIN = "test-admin-token-for-admin-routes-01"
PKEY = "sk-ant-admin-routes-provider-key-RRRR"

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": ADMIN}, auto_key=False)
DB = os.path.join(gw.data_dir, "gatehouse.db")

ROUTE_FIELDS = {"name", "targets", "enforce_context", "max_input_tokens", "created_at",
                "updated_at"}


def admin(method, path, body=None, token=ADMIN):
    hdrs = {} if token is None else {"authorization": "Bearer " + token}
    return h.request(gw.admin_port, method, path, body, hdrs)


def expect_error(r, status, etype, *words):
    assert r.status == status, (status, r)
    e = r.json()
    assert e["type"] == "error" and e["error"]["type"] == etype, e
    for w in words:
        assert w in e["error"]["message"], (w, e)
    return e


def db():
    c = sqlite3.connect(DB, timeout=10)
    c.row_factory = sqlite3.Row
    return c


def db_targets(name):
    c = db()
    try:
        return [tuple(r) for r in c.execute(
            "SELECT t.position, t.provider, t.model FROM route_targets t "
            "JOIN routes r ON r.id = t.route_id WHERE r.name = ? ORDER BY t.position", (name,))]
    finally:
        c.close()


def db_count(sql, *args):
    c = db()
    try:
        return c.execute(sql, args).fetchone()[0]
    finally:
        c.close()


def epoch():
    r = admin("GET", "/metrics")
    assert r.status == 200, r
    m = re.search(r"^gatehouse_config_epoch (\d+)$", r.body.decode(), re.M)
    assert m, r.body[:500]
    return int(m.group(1))


def new_route(name, targets=None, **fields):
    body = {"name": name,
            "targets": targets or [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]}
    body.update(fields)
    r = admin("POST", "/admin/routes", body)
    assert r.status == 201, r
    return r.json()


def setup_providers():
    for name in ("backup", "third"):
        r = admin("POST", "/admin/providers", {"name": name, "base_url": mock.url,
                                               "api_key": PKEY})
        assert r.status == 201, r


setup_providers()


# ---- routes ----

def test_route_create_get_list():
    r = admin("POST", "/admin/routes", {
        "name": "fast",
        "targets": [{"provider": "anthropic", "model": "claude-haiku-4-5"},
                    {"provider": "backup", "model": "claude-3-5-haiku-latest"}]})
    assert r.status == 201, r
    f = r.json()
    assert set(f) == ROUTE_FIELDS, f
    assert f["name"] == "fast" and f["enforce_context"] is False, f
    assert f["max_input_tokens"] is None, f
    assert f["targets"] == [{"provider": "anthropic", "model": "claude-haiku-4-5"},
                            {"provider": "backup", "model": "claude-3-5-haiku-latest"}], f
    assert f["created_at"].endswith("Z") and f["updated_at"].endswith("Z"), f
    assert db_targets("fast") == [(0, "anthropic", "claude-haiku-4-5"),
                                  (1, "backup", "claude-3-5-haiku-latest")]
    d = new_route("claude-default", [{"provider": "backup", "model": "claude-sonnet-4-5"}],
                  enforce_context=True, max_input_tokens=200000)
    assert d["enforce_context"] is True and d["max_input_tokens"] == 200000, d
    s = new_route("team.sonnet", enforce_context=False, max_input_tokens=None)
    assert s["enforce_context"] is False and s["max_input_tokens"] is None, s
    r = admin("GET", "/admin/routes/fast")
    assert r.status == 200 and r.json() == f, (r, f)
    assert admin("GET", "/admin/routes/claude-default").json() == d
    assert admin("GET", "/admin/routes/team.sonnet").json() == s
    assert admin("HEAD", "/admin/routes/fast").status == 200
    r = admin("GET", "/admin/routes")
    assert r.status == 200 and set(r.json()) == {"data"}, r
    data = r.json()["data"]
    names = [x["name"] for x in data]
    assert names == sorted(names) and {"fast", "claude-default", "team.sonnet"} <= set(names), \
        names
    assert [x for x in data if x["name"] == "fast"] == [f], data


def test_route_names_in_paths():
    # '/' travels as %2F; unencoded it is another path
    r = new_route("team/sonnet")
    assert r["name"] == "team/sonnet", r
    assert admin("GET", "/admin/routes/team%2Fsonnet").json() == r
    assert admin("GET", "/admin/routes/team%2fsonnet").json() == r
    expect_error(admin("GET", "/admin/routes/team/sonnet"), 404, "not_found_error", "%2F")
    sp = new_route("my route+1")
    assert admin("GET", "/admin/routes/my%20route+1").json() == sp
    maxname = "m" * 159
    assert new_route(maxname)["name"] == maxname
    assert admin("GET", "/admin/routes/" + maxname).status == 200
    # a name the worker would read as a pin of an existing provider is refused
    expect_error(admin("POST", "/admin/routes", {
        "name": "backup/sonnet", "targets": [{"provider": "backup", "model": "m"}]}),
        400, "invalid_request_error", "name", "backup")


def test_route_validation():
    t = [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]
    good = {"name": "v1", "targets": t}
    cases = [
        ({"targets": t}, "name"),
        (dict(good, name=""), "name"),
        (dict(good, name=None), "name"),
        (dict(good, name=7), "name"),
        (dict(good, name="x" * 160), "name"),
        (dict(good, name="has\nnewline"), "name"),
        (dict(good, name="with?temperature=1"), "name"),
        (dict(good, name="prov:model"), "name"),
        ({"name": "v1"}, "targets"),
        (dict(good, targets=[]), "targets"),
        (dict(good, targets=None), "targets"),
        (dict(good, targets="anthropic/claude"), "targets"),
        (dict(good, targets={"provider": "anthropic", "model": "m"}), "targets"),
        (dict(good, targets=t * 17), "targets"),
        (dict(good, targets=["anthropic/claude"]), "targets[0]"),
        (dict(good, targets=[{"model": "m"}]), "targets[0].provider"),
        (dict(good, targets=[{"provider": "", "model": "m"}]), "targets[0].provider"),
        (dict(good, targets=[{"provider": 3, "model": "m"}]), "targets[0].provider"),
        (dict(good, targets=[{"provider": "anthropic"}]), "targets[0].model"),
        (dict(good, targets=t + [{"provider": "anthropic", "model": None}]), "targets[1].model"),
        (dict(good, targets=t + [{"provider": "anthropic", "model": "m" * 160}]),
         "targets[1].model"),
        (dict(good, targets=[{"provider": "anthropic", "model": "m?temperature=1"}]),
         "targets[0].model"),
        (dict(good, targets=t + [{"provider": "nope", "model": "m"}]), "targets[1].provider"),
        (dict(good, targets=[{"provider": "anthropic", "model": "m", "weight": 2}]), "weight"),
        (dict(good, enforce_context="yes"), "enforce_context"),
        (dict(good, enforce_context=1), "enforce_context"),
        (dict(good, enforce_context=None), "enforce_context"),
        (dict(good, max_input_tokens=0), "max_input_tokens"),
        (dict(good, max_input_tokens=-5), "max_input_tokens"),
        (dict(good, max_input_tokens="1000"), "max_input_tokens"),
        (dict(good, max_input_tokens=1.5), "max_input_tokens"),
        (dict(good, max_input_tokens=2 ** 40), "max_input_tokens"),
        (dict(good, colour="blue"), "colour"),
    ]
    before = db_count("SELECT count(*) FROM routes")
    for body, field in cases:
        expect_error(admin("POST", "/admin/routes", body), 400, "invalid_request_error", field)
        if field != "name":
            # the same body refused by PUT, with or without the name
            put = {k: v for k, v in body.items() if k != "name"}
            expect_error(admin("PUT", "/admin/routes/v1", put), 400, "invalid_request_error",
                         field)
    e = expect_error(admin("POST", "/admin/routes", dict(good, targets=t + [
        {"provider": "nope", "model": "m"}])), 400, "invalid_request_error")
    assert "'targets[1].provider'" in e["error"]["message"] and "nope" in e["error"]["message"], e
    for raw in ('{"name": "v1",', "[1]", '"x"', "", "{} {}"):
        expect_error(admin("POST", "/admin/routes", raw if raw else b""), 400,
                     "invalid_request_error")
    assert db_count("SELECT count(*) FROM routes") == before, "a refused create left a row"
    assert admin("GET", "/admin/routes/v1").status == 404
    # exactly the limit is fine
    r = new_route("sixteen", [{"provider": "anthropic", "model": "m%d" % i} for i in range(16)])
    assert len(r["targets"]) == 16 and [x["model"] for x in r["targets"]][-1] == "m15", r


def test_route_duplicate_is_409():
    new_route("dup")
    r = admin("POST", "/admin/routes", {"name": "dup",
                                        "targets": [{"provider": "backup", "model": "m"}]})
    expect_error(r, 409, "invalid_request_error", "already exists", "dup")
    assert db_targets("dup") == [(0, "anthropic", "claude-sonnet-4-5")]


def test_route_put_create_and_replace():
    e0 = epoch()
    r = admin("PUT", "/admin/routes/put-me", {
        "targets": [{"provider": "backup", "model": "a"}, {"provider": "third", "model": "b"},
                    {"provider": "anthropic", "model": "c"}],
        "enforce_context": True, "max_input_tokens": 1000})
    assert r.status == 201, r
    p = r.json()
    assert p["name"] == "put-me" and p["enforce_context"] is True, p
    assert p["max_input_tokens"] == 1000 and len(p["targets"]) == 3, p
    assert epoch() > e0
    # a replace: everything the body holds, defaults for what it omits, targets replaced
    r = admin("PUT", "/admin/routes/put-me",
              {"name": "put-me", "targets": [{"provider": "third", "model": "z"}]})
    assert r.status == 200, r
    q = r.json()
    assert q["targets"] == [{"provider": "third", "model": "z"}], q
    assert q["enforce_context"] is False and q["max_input_tokens"] is None, q
    assert q["created_at"] == p["created_at"] and q["updated_at"] >= p["updated_at"], (p, q)
    assert db_targets("put-me") == [(0, "third", "z")]
    assert admin("GET", "/admin/routes/put-me").json() == q
    # renaming through PUT is refused, as are names no client could reach
    expect_error(admin("PUT", "/admin/routes/put-me", {"name": "other", "targets": q["targets"]}),
                 400, "invalid_request_error", "name")
    expect_error(admin("PUT", "/admin/routes/a%3Fb", {"targets": q["targets"]}), 400,
                 "invalid_request_error", "name")
    expect_error(admin("PUT", "/admin/routes/a:b", {"targets": q["targets"]}), 400,
                 "invalid_request_error", "name")
    expect_error(admin("PUT", "/admin/routes/put-me", {}), 400, "invalid_request_error",
                 "targets")
    expect_error(admin("PUT", "/admin/routes/put-me",
                       {"targets": [{"provider": "gone", "model": "z"}]}), 400,
                 "invalid_request_error", "targets[0].provider")
    # refused replaces left the route as it was
    assert admin("GET", "/admin/routes/put-me").json() == q
    assert admin("GET", "/admin/routes/other").status == 404
    r = admin("PUT", "/admin/routes/team%2Fput", {"targets": [{"provider": "backup",
                                                               "model": "m"}]})
    assert r.status == 201 and r.json()["name"] == "team/put", r


def test_route_delete():
    new_route("doomed", [{"provider": "backup", "model": "a"}, {"provider": "third", "model": "b"}])
    assert len(db_targets("doomed")) == 2
    e0 = epoch()
    r = admin("DELETE", "/admin/routes/doomed")
    assert r.status == 200 and r.json() == {"deleted": True, "name": "doomed"}, r
    assert epoch() > e0
    expect_error(admin("GET", "/admin/routes/doomed"), 404, "not_found_error", "doomed")
    expect_error(admin("DELETE", "/admin/routes/doomed"), 404, "not_found_error", "doomed")
    assert db_count("SELECT count(*) FROM route_targets WHERE route_id NOT IN "
                    "(SELECT id FROM routes)") == 0
    new_route("team/doomed")
    r = admin("DELETE", "/admin/routes/team%2Fdoomed")
    assert r.status == 200 and r.json() == {"deleted": True, "name": "team/doomed"}, r
    # the name is free again
    assert new_route("doomed")["targets"][0]["provider"] == "anthropic"


def test_route_not_found():
    expect_error(admin("GET", "/admin/routes/no-such-route"), 404, "not_found_error",
                 "no-such-route")
    expect_error(admin("DELETE", "/admin/routes/no-such-route"), 404, "not_found_error")
    for path in ("/admin/routes/a/b", "/admin/routes/fast/targets", "/admin/routesx"):
        expect_error(admin("GET", path), 404, "not_found_error")


def test_route_methods():
    for method, path, allow in (("PUT", "/admin/routes", "POST"),
                                ("DELETE", "/admin/routes", "GET"),
                                ("PATCH", "/admin/routes", "POST"),
                                ("POST", "/admin/routes/fast", "PUT"),
                                ("PATCH", "/admin/routes/fast", "DELETE")):
        r = admin(method, path, {} if method in ("POST", "PUT", "PATCH") else None)
        expect_error(r, 405, "invalid_request_error")
        assert allow in r.headers.get("allow", ""), (method, path, r.headers)


def test_routes_need_the_admin_token():
    for tok in (None, "wrong-token"):
        for method, path in (("GET", "/admin/routes"), ("GET", "/admin/routes/fast"),
                             ("POST", "/admin/routes"), ("PUT", "/admin/routes/fast"),
                             ("DELETE", "/admin/routes/fast")):
            body = {"name": "x", "targets": [{"provider": "anthropic", "model": "m"}]} \
                if method in ("POST", "PUT") else None
            expect_error(admin(method, path, body, token=tok), 401, "authentication_error")
    assert admin("GET", "/admin/routes/fast").status == 200
    assert admin("GET", "/admin/routes/x").status == 404


def test_route_writes_bump_the_epoch():
    e0 = epoch()
    new_route("epoch-route")
    e1 = epoch()
    assert e1 > e0, (e0, e1)
    assert admin("PUT", "/admin/routes/epoch-route",
                 {"targets": [{"provider": "backup", "model": "m"}]}).status == 200
    e2 = epoch()
    assert e2 > e1, (e1, e2)
    # refused writes change nothing, so they tell nobody
    expect_error(admin("POST", "/admin/routes", {"name": "epoch-route", "targets": [
        {"provider": "backup", "model": "m"}]}), 409, "invalid_request_error")
    expect_error(admin("PUT", "/admin/routes/epoch-route", {"targets": []}), 400,
                 "invalid_request_error")
    assert epoch() == e2
    assert admin("DELETE", "/admin/routes/epoch-route").status == 200
    assert epoch() > e2


# ---- virtual keys: force_model and aliases ----

def test_key_rewrites_round_trip():
    aliases = {"sonnet": "claude-default", "haiku": "anthropic/claude-haiku-4-5",
               "cold": "anthropic:claude-sonnet-4-5?temperature=0&top_k=40", "team/x": "fast"}
    r = admin("POST", "/admin/keys", {"name": "rewrites", "force_model": "fast",
                                      "aliases": aliases})
    assert r.status == 201, r
    k = r.json()
    assert k["force_model"] == "fast" and k["aliases"] == aliases, k
    kid = k["id"]
    g = admin("GET", "/admin/keys/" + kid).json()
    assert g["force_model"] == "fast" and g["aliases"] == aliases, g
    listed = [x for x in admin("GET", "/admin/keys").json()["data"] if x["id"] == kid]
    assert listed == [g], listed
    c = db()
    row = c.execute("SELECT force_model, aliases, json_type(aliases) FROM virtual_keys "
                    "WHERE id = ?", (kid,)).fetchone()
    c.close()
    assert row[0] == "fast" and row[2] == "object", tuple(row)
    assert row[1].startswith("{") and "\\/" not in row[1], row[1]
    # PATCH one leaves the other alone
    p = admin("PATCH", "/admin/keys/" + kid, {"force_model": "claude-sonnet-4-5"}).json()
    assert p["force_model"] == "claude-sonnet-4-5" and p["aliases"] == aliases, p
    p = admin("PATCH", "/admin/keys/" + kid, {"aliases": {"a": "b"}}).json()
    assert p["force_model"] == "claude-sonnet-4-5" and p["aliases"] == {"a": "b"}, p
    p = admin("PATCH", "/admin/keys/" + kid, {"aliases": {}}).json()
    assert p["aliases"] == {}, p
    p = admin("PATCH", "/admin/keys/" + kid, {"force_model": None, "aliases": None}).json()
    assert p["force_model"] is None and p["aliases"] is None, p
    assert admin("GET", "/admin/keys/" + kid).json() == p
    c = db()
    row = c.execute("SELECT force_model, aliases FROM virtual_keys WHERE id = ?",
                    (kid,)).fetchone()
    c.close()
    assert tuple(row) == (None, None), tuple(row)
    # a key made without them has neither
    d = admin("POST", "/admin/keys", {"name": "plain"}).json()
    assert d["force_model"] is None and d["aliases"] is None, d
    # the limits: 64 aliases, 159-byte names and targets
    many = {"m%02d" % i: "t" * 159 for i in range(63)}
    many["n" * 159] = "x"
    p = admin("PATCH", "/admin/keys/" + kid, {"aliases": many, "force_model": "f" * 159}).json()
    assert p["aliases"] == many and p["force_model"] == "f" * 159, p


def test_key_rewrites_validation():
    k = admin("POST", "/admin/keys", {"name": "rewrite-checks"}).json()
    cases = [
        ({"force_model": 5}, "force_model"),
        ({"force_model": ""}, "force_model"),
        ({"force_model": "f" * 160}, "force_model"),
        ({"force_model": "a\tb"}, "force_model"),
        ({"force_model": ["fast"]}, "force_model"),
        ({"aliases": ["a", "b"]}, "aliases"),
        ({"aliases": "a=b"}, "aliases"),
        ({"aliases": {"a": 1}}, "aliases"),
        ({"aliases": {"a": None}}, "aliases"),
        ({"aliases": {"a": ""}}, "aliases"),
        ({"aliases": {"a": {"to": "b"}}}, "aliases"),
        ({"aliases": {"": "b"}}, "aliases"),
        ({"aliases": {"a\nb": "c"}}, "aliases"),
        ({"aliases": {"n" * 160: "x"}}, "aliases"),
        ({"aliases": {"a": "t" * 160}}, "aliases"),
        ({"aliases": {"m%02d" % i: "x" for i in range(65)}}, "aliases"),
    ]
    before = db_count("SELECT count(*) FROM virtual_keys")
    for body, field in cases:
        expect_error(admin("POST", "/admin/keys", dict(body, name="bad")), 400,
                     "invalid_request_error", field)
        expect_error(admin("PATCH", "/admin/keys/" + k["id"], body), 400,
                     "invalid_request_error", field)
    assert db_count("SELECT count(*) FROM virtual_keys") == before, "a refused create left a row"
    g = admin("GET", "/admin/keys/" + k["id"]).json()
    assert g["force_model"] is None and g["aliases"] is None, g
    expect_error(admin("POST", "/admin/keys", {"name": "bad", "aliases": {"sonnet": 3}}), 400,
                 "invalid_request_error", "aliases", "sonnet")


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
