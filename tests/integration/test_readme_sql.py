"""test_readme_sql.py: runs known traffic through gatehouse, then every SQL query of the README's
"Reporting with SQL" section against the resulting database, and checks the numbers.

`python3 tests/integration/test_readme_sql.py --print` prints the section's queries with their
output from such a run (how the README's examples were made)."""
import os
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

README = os.path.join(os.environ.get("GH_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", ".."),
                      "README.md")

# (key name, model, requests, tokens in/out/cache write/cache read, extra headers)
TRAFFIC = [
    ("alice", "claude-sonnet-4-5", 3, (1000, 500, 2000, 10000), {}),
    ("ci-pipeline", "claude-haiku-4-5", 5, (20000, 1000, 0, 0), {}),
    ("ci-pipeline", "claude-haiku-4-5", 1, (0, 0, 0, 0), {"x-mock-scenario": "529"}),
    ("claude-code", "claude-opus-4-5", 2, (5000, 2000, 0, 50000), {}),
]
KEYS = {"alice": {"budget_usd": 1.0, "budget_period": "1M"},
        "ci-pipeline": {"budget_usd": 0.15, "budget_period": "1d"},
        "claude-code": {}}
PRICES = {"claude-sonnet-4-5": (3, 15, 3.75, 0.30), "claude-haiku-4-5": (1, 5, 1.25, 0.10),
          "claude-opus-4-5": (5, 25, 6.25, 0.50)}


def readme_queries():
    text = open(README).read()
    section = text.split("## Reporting with SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def run_traffic():
    mock = h.Mock()
    gw = h.Gateway(mock.url, workers=2, auto_key=False)
    secrets = {}
    for name, fields in KEYS.items():
        r = gw.admin("POST", "/admin/keys", dict(fields, name=name))
        assert r.status == 201, r
        secrets[name] = r.json()["key"]
    n = 0
    for name, model, count, (i, o, cw, cr), extra in TRAFFIC:
        for k in range(count):
            hdrs = {"x-api-key": secrets[name], "x-mock-input-tokens": str(i),
                    "x-mock-output-tokens": str(o), "x-mock-cache-creation": str(cw),
                    "x-mock-cache-read": str(cr)}
            hdrs.update(extra)
            body = {"model": model, "max_tokens": 64, "stream": name == "claude-code",
                    "messages": [{"role": "user", "content": "report %d" % k}]}
            gw.post("/v1/messages", body, hdrs)
            n += 1
    db = os.path.join(gw.data_dir, "gatehouse.db")

    def written():
        c = sqlite3.connect(db)
        try:
            return c.execute("SELECT count(*) FROM usage_log").fetchone()[0]
        finally:
            c.close()
    h.wait_for(lambda: written() >= n, what="usage rows")
    return mock, gw, db


def cost(model, toks):
    p = PRICES[model]
    return sum(a * b for a, b in zip(toks, p)) / 1e6


def expected():
    spend, reqs, models, inp, out = {}, {}, {}, {}, {}
    for name, model, count, toks, extra in TRAFFIC:
        ok = not extra
        c = cost(model, toks) * count if ok else 0.0
        spend[name] = spend.get(name, 0) + c
        reqs[name] = reqs.get(name, 0) + count
        m = models.setdefault(model, [0, 0.0])
        m[0] += count
        m[1] += c
        if ok:
            inp[name] = inp.get(name, 0) + count * (toks[0] + toks[2] + toks[3])
            out[name] = out.get(name, 0) + count * toks[1]
    return spend, reqs, models, inp, out


def test_readme_queries_give_the_expected_numbers():
    qs = readme_queries()
    assert len(qs) >= 5, "the README should have at least five report queries"
    mock, gw, db = run_traffic()
    try:
        c = sqlite3.connect(db)
        spend, reqs, models, inp, out = expected()
        res = [c.execute(q).fetchall() for q in qs]
        # 1: spend per key this month
        got = {r[0]: (r[1], r[2]) for r in res[0]}
        for name in KEYS:
            assert abs(got[name][0] - round(spend[name], 4)) < 1e-9, (name, got)
            assert got[name][1] == reqs[name], (name, got)
        # 2: top models by cost
        got = {r[0]: (r[1], r[2]) for r in res[1]}
        for model, (n, cst) in models.items():
            assert got[model][0] == n and abs(got[model][1] - round(cst, 4)) < 1e-9, (model, got)
        assert [r[0] for r in res[1]] == sorted(models, key=lambda m: -models[m][1])
        # 3: error rate per provider
        (prov, n, errors, pct), = res[2]
        total = sum(x[2] for x in TRAFFIC)
        assert (prov, n, errors) == ("anthropic", total, 1), res[2]
        assert abs(pct - round(100.0 / total, 1)) < 1e-9
        # 4: daily tokens per key
        got = {r[1]: (r[2], r[3]) for r in res[3]}
        for name in KEYS:
            assert got[name] == (inp[name], out[name]), (name, got)
        # 5: keys near their budget: only ci-pipeline (0.125 of 0.15) is over 80 %
        assert [r[0] for r in res[4]] == ["ci-pipeline"], res[4]
        assert abs(res[4][0][4] - round(100 * spend["ci-pipeline"] / 0.15, 1)) < 1e-9, res[4]
        c.close()
    finally:
        gw.cleanup()
        mock.stop()


def test_schema_sql_shows_the_current_schema():
    g = h.Gateway(None, workers=1, auto_key=False, provider_key=None)
    try:
        db = sqlite3.connect(os.path.join(g.data_dir, "gatehouse.db"))
        live = {r[0].strip() + ";" for r in db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.close()
        text = open(os.path.join(os.path.dirname(README), "schema", "schema.sql")).read()
        assert "PRAGMA user_version = %d" % version in text, "schema.sql names another level"
        missing = [st for st in live if st not in text]
        assert not missing, "schema/schema.sql is stale (run scripts/schema-dump): %s" % missing[:1]
    finally:
        g.cleanup()


def print_section():
    mock, gw, db = run_traffic()
    try:
        titles = re.findall(r"\n(\*\*[^\n]*)\n\n```sql", open(README).read())
        for title, q in zip(titles, readme_queries()):
            out = subprocess.run(["sqlite3", "-header", "-column", db, q], capture_output=True,
                                 text=True).stdout
            print(title + "\n\n```sql\n" + q + "```\n\n```\n" + out.rstrip() + "\n```\n")
    finally:
        gw.cleanup()
        mock.stop()


if __name__ == "__main__" and "--print" in sys.argv:
    print_section()
else:
    h.run(globals())
