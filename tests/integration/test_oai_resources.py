"""test_oai_resources.py: OpenAI's Files and Batch APIs through gatehouse: file objects and lists in
OpenAI's shape when no anthropic-version header is sent, per-key ownership (another key gets an
OpenAI-shaped 404), batches made from a requests array or an uploaded JSONL input file (each chat
completion translated, models checked against the allowlist), retrieve/cancel/list in OpenAI's
batch shape, and results relayed line by line as chat.completion objects and accounted once."""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2)
other = gw.admin("POST", "/admin/keys", {"name": "other"}).json()["key"]
ANTHROPIC = {"anthropic-version": "2023-06-01"}
FILE_KEYS = {"id", "object", "bytes", "created_at", "filename", "purpose", "status", "content_type"}
BATCH_KEYS = {"id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
              "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
              "completed_at", "cancelling_at", "cancelled_at", "request_counts", "metadata"}


def chat(model="claude-sonnet-4-5", text="hi", **kw):
    body = {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": text}]}
    body.update(kw)
    return body


def multipart(name, data, ctype="application/jsonl"):
    """The OpenAI SDK's upload: a purpose part, then the file."""
    boundary = "----ghoaiboundary4f1c2e"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
             "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: %s\r\n\r\n" % (boundary, boundary, name, ctype)).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    return body, "multipart/form-data; boundary=" + boundary


def upload(data, name="input.jsonl", key=None, ctype="application/jsonl"):
    body, ct = multipart(name, data, ctype)
    hdrs = {"content-type": ct}
    if key:
        hdrs["x-api-key"] = key
    r = gw.post("/v1/files", body, hdrs)
    assert r.status == 200, r
    return r.json()


def jsonl(items):
    return "".join(json.dumps(x) + "\n" for x in items).encode()


def assert_oai_error(r, status, typ=None):
    assert r.status == status, r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert e["message"], e
    if typ:
        assert e["type"] == typ, e
    return e


def usage_rows(where, args=()):
    c = sqlite3.connect(os.path.join(gw.data_dir, "gatehouse.db"))
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM usage_log WHERE " + where, args)]
    finally:
        c.close()


def test_files_in_openai_shape():
    data = b'{"x": 1}\n' * 5000
    mock.reset()
    f = upload(data, "data.jsonl")
    assert set(f) == FILE_KEYS, f
    assert f["object"] == "file" and f["id"].startswith("file_") and f["bytes"] == len(data)
    assert f["filename"] == "data.jsonl" and f["purpose"] == "batch" and f["status"] == "processed"
    assert f["content_type"] == "application/jsonl" and isinstance(f["created_at"], int)
    assert abs(f["created_at"] - time.time()) < 120
    up = mock.last()
    assert up["path"] == "/v1/files" and "files-api-2025-04-14" in up["headers"]["anthropic-beta"]
    assert up["headers"]["anthropic-version"] == "2023-06-01"
    g = gw.req("GET", "/v1/files/" + f["id"])
    assert g.status == 200 and g.json() == f, g
    lst = gw.req("GET", "/v1/files?limit=5&purpose=batch").json()
    assert lst["object"] == "list" and lst["has_more"] in (True, False)
    assert f["id"] in [x["id"] for x in lst["data"]] and lst["first_id"] == lst["data"][0]["id"]
    assert lst["last_id"] == lst["data"][-1]["id"] and all(set(x) == FILE_KEYS for x in lst["data"])
    # OpenAI's cursor becomes Anthropic's
    gw.req("GET", "/v1/files?after=%s&limit=3" % f["id"])
    assert mock.last()["query"] in ("after_id=%s&limit=3" % f["id"], "limit=3&after_id=%s" % f["id"])
    c = gw.req("GET", "/v1/files/%s/content" % f["id"])
    assert c.status == 200 and c.body == data
    # with anthropic-version the Anthropic shape is unchanged
    a = gw.req("GET", "/v1/files/" + f["id"], headers=ANTHROPIC).json()
    assert a["type"] == "file" and a["size_bytes"] == len(data) and "bytes" not in a
    d = gw.req("DELETE", "/v1/files/" + f["id"])
    assert d.status == 200 and d.json() == {"id": f["id"], "object": "file", "deleted": True}, d
    assert_oai_error(gw.req("GET", "/v1/files/" + f["id"]), 404, "invalid_request_error")


def test_file_ownership_and_errors_in_openai_shape():
    f = upload(b"secret bytes")
    for method, path in (("GET", "/v1/files/" + f["id"]),
                         ("GET", "/v1/files/%s/content" % f["id"]),
                         ("DELETE", "/v1/files/" + f["id"])):
        e = assert_oai_error(gw.req(method, path, headers={"x-api-key": other}), 404,
                             "invalid_request_error")
        assert f["id"] in e["message"], e
    lst = gw.req("GET", "/v1/files", headers={"x-api-key": other}).json()
    assert lst["object"] == "list" and f["id"] not in [x["id"] for x in lst["data"]]
    assert_oai_error(gw.req("GET", "/v1/files", headers={"x-api-key": "nope"}), 401,
                     "authentication_error")
    r = gw.req("PUT", "/v1/files/" + f["id"], b"")
    assert_oai_error(r, 405)
    assert "GET" in r.headers["allow"]
    # the owner still has it
    assert gw.req("GET", "/v1/files/" + f["id"]).status == 200


def test_batch_from_requests_array():
    mock.reset()
    body = {"endpoint": "/v1/chat/completions", "completion_window": "24h", "requests": [
        {"custom_id": "a-1", "body": chat(max_completion_tokens=50, stop=["END"], seed=3)},
        {"custom_id": "b-2", "params": chat("claude-haiku-4-5", "yo", stream=True)}]}
    r = gw.post("/v1/batches", body)
    assert r.status == 200, r
    b = r.json()
    assert BATCH_KEYS <= set(b), b
    assert b["object"] == "batch" and b["id"].startswith("msgbatch_")
    assert b["endpoint"] == "/v1/chat/completions" and b["completion_window"] == "24h"
    assert b["input_file_id"] is None and b["errors"] is None and b["metadata"] is None
    assert b["status"] == "completed" and b["completed_at"] and b["cancelled_at"] is None
    assert b["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert isinstance(b["created_at"], int) and b["expires_at"] - b["created_at"] == 86400
    up = mock.last()
    assert up["path"] == "/v1/messages/batches" and up["method"] == "POST"
    sent = json.loads(up["body"])["requests"]
    assert [x["custom_id"] for x in sent] == ["a-1", "b-2"]
    p0, p1 = sent[0]["params"], sent[1]["params"]
    assert p0["model"] == "claude-sonnet-4-5" and p0["system"] == "be brief"
    assert p0["max_tokens"] == 50 and p0["stop_sequences"] == ["END"] and "seed" not in p0
    assert p0["messages"][0]["role"] == "user" and "messages" in p1
    assert p1["model"] == "claude-haiku-4-5" and p1["max_tokens"] == 4096 and "stream" not in p1
    # the Anthropic-shaped routes agree on ownership
    a = gw.req("GET", "/v1/messages/batches/" + b["id"], headers=ANTHROPIC)
    assert a.status == 200 and a.json()["type"] == "message_batch"
    assert gw.req("GET", "/v1/messages/batches/" + b["id"], headers={"x-api-key": other}).status == 404


def test_batch_from_input_file():
    lines = [{"custom_id": "req-%d" % i, "method": "POST", "url": "/v1/chat/completions",
              "body": chat(text="q%d" % i, max_tokens=20)} for i in range(3)]
    f = upload(jsonl(lines))
    mock.reset()
    r = gw.post("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                "completion_window": "24h"})
    assert r.status == 200, r
    b = r.json()
    assert b["input_file_id"] == f["id"] and b["request_counts"]["total"] == 3
    reqs = mock.requests()
    get = [x for x in reqs if x["path"] == "/v1/files/%s/content" % f["id"]]
    assert get and get[0]["method"] == "GET"
    assert "files-api-2025-04-14" in get[0]["headers"]["anthropic-beta"]
    post = [x for x in reqs if x["path"] == "/v1/messages/batches"]
    assert len(post) == 1
    sent = json.loads(post[0]["body"])["requests"]
    assert [x["custom_id"] for x in sent] == ["req-0", "req-1", "req-2"]
    assert all(x["params"]["max_tokens"] == 20 and x["params"]["system"] == "be brief" for x in sent)
    got = gw.req("GET", "/v1/batches/" + b["id"]).json()
    assert got["id"] == b["id"] and got["input_file_id"] == f["id"], got
    listed = [x for x in gw.req("GET", "/v1/batches?limit=100").json()["data"] if x["id"] == b["id"]]
    assert listed and listed[0]["input_file_id"] == f["id"], listed
    # another key cannot use the file
    e = assert_oai_error(gw.post("/v1/batches", {"input_file_id": f["id"],
                                                 "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"},
                                 {"x-api-key": other}), 404)
    assert f["id"] in e["message"]
    # a bad line is named
    bad = upload(jsonl(lines[:1]) + b"not json\n")
    e = assert_oai_error(gw.post("/v1/batches", {"input_file_id": bad["id"],
                                                 "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"}), 400)
    assert "line 2" in e["message"], e
    wrong = upload(jsonl([dict(lines[0], url="/v1/embeddings")]))
    assert_oai_error(gw.post("/v1/batches", {"input_file_id": wrong["id"]}), 400)


def test_batch_request_errors():
    assert_oai_error(gw.post("/v1/batches", {"input_file_id": "file_nope"}), 404)
    assert_oai_error(gw.post("/v1/batches", {"endpoint": "/v1/chat/completions"}), 400)
    e = assert_oai_error(gw.post("/v1/batches", {"input_file_id": "x", "endpoint": "/v1/embeddings"}), 400)
    assert "endpoint" in e["message"]
    assert_oai_error(gw.post("/v1/batches", {"input_file_id": "x", "completion_window": "1h"}), 400)
    e = assert_oai_error(gw.post("/v1/batches", {"requests": [
        {"custom_id": "a", "body": chat()}, {"custom_id": "b", "body": chat(n=2)}]}), 400)
    assert "requests[1]" in e["message"], e
    assert_oai_error(gw.post("/v1/batches", b"{"), 400)
    assert_oai_error(gw.req("DELETE", "/v1/batches"), 405)


def test_batch_retrieve_cancel_list():
    body = {"requests": [{"custom_id": "c%d" % i, "body": chat()} for i in range(2)]}
    b = gw.post("/v1/batches", body, {"x-mock-batch-status": "in_progress"}).json()
    assert b["status"] == "in_progress" and b["in_progress_at"] and b["completed_at"] is None
    assert b["request_counts"] == {"total": 2, "completed": 0, "failed": 0}
    assert gw.req("GET", "/v1/batches/" + b["id"]).json()["status"] == "in_progress"
    mock.reset()
    lst = gw.req("GET", "/v1/batches?limit=50").json()
    assert mock.last()["path"] == "/v1/messages/batches" and "limit=50" in mock.last()["query"]
    assert lst["object"] == "list" and isinstance(lst["has_more"], bool)
    assert b["id"] in [x["id"] for x in lst["data"]]
    assert all(x["object"] == "batch" for x in lst["data"])
    assert lst["first_id"] == lst["data"][0]["id"] and lst["last_id"] == lst["data"][-1]["id"]
    assert b["id"] not in [x["id"] for x in
                           gw.req("GET", "/v1/batches", headers={"x-api-key": other}).json()["data"]]
    for method, path in (("GET", "/v1/batches/" + b["id"]),
                         ("POST", "/v1/batches/%s/cancel" % b["id"]),
                         ("GET", "/v1/batches/%s/results" % b["id"])):
        assert_oai_error(gw.req(method, path, b"" if method == "POST" else None,
                                headers={"x-api-key": other}), 404, "invalid_request_error")
    # results before the end: the upstream 400 in OpenAI's shape
    assert_oai_error(gw.req("GET", "/v1/batches/%s/results" % b["id"]), 400)
    c = gw.post("/v1/batches/%s/cancel" % b["id"], b"")
    assert c.status == 200, c
    c = c.json()
    assert c["status"] == "cancelling" and isinstance(c["cancelling_at"], int), c
    d = gw.req("GET", "/v1/batches/" + b["id"]).json()
    assert d["status"] == "cancelled" and d["cancelled_at"] and d["completed_at"] is None, d
    lines = [json.loads(x) for x in gw.req("GET", "/v1/batches/%s/results" % b["id"]).body.splitlines()]
    assert [x["error"]["code"] for x in lines] == ["batch_cancelled"] * 2
    assert all(x["response"] is None for x in lines)


def test_batch_results_translated_streamed_and_accounted():
    k = gw.admin("POST", "/admin/keys", {"name": "oai-batcher"}).json()
    hdr = {"x-api-key": k["key"], "x-mock-input-tokens": "1000", "x-mock-output-tokens": "100"}
    reqs = [{"custom_id": "ok%d" % i, "body": chat()} for i in range(3)]
    reqs.append({"custom_id": "bad", "body": chat("mock-error")})
    b = gw.post("/v1/batches", {"requests": reqs}, hdr).json()
    assert b["request_counts"] == {"total": 4, "completed": 3, "failed": 1}, b
    chunks = list(h.raw_stream(gw.port, "/v1/batches/%s/results" % b["id"], b"",
                               {"x-api-key": k["key"], "x-mock-results-interval-ms": "250"},
                               method="GET"))
    raw = b"".join(c for _, c in chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    lines = [json.loads(x) for x in h.dechunk(body).decode().splitlines() if x]
    assert [x["custom_id"] for x in lines] == ["ok0", "ok1", "ok2", "bad"]
    for x in lines[:3]:
        assert set(x) == {"id", "custom_id", "response", "error"} and x["error"] is None
        assert x["id"].startswith("batch_req_")
        resp = x["response"]
        assert resp["status_code"] == 200 and resp["request_id"].startswith("msg_")
        c = resp["body"]
        assert c["object"] == "chat.completion"
        assert c["choices"][0]["message"]["content"] == "Hello from mock"
        assert c["choices"][0]["finish_reason"] == "stop"
        assert c["usage"]["prompt_tokens"] == 1000 and c["usage"]["completion_tokens"] == 100
    assert lines[3]["response"] is None
    assert lines[3]["error"]["code"] == "invalid_request_error" and lines[3]["error"]["message"]
    # relayed line by line as they arrived
    t_first = next(t for t, c in chunks if b"custom_id" in c)
    assert chunks[-1][0] - t_first > 0.5, (t_first, chunks[-1][0])
    # accounted once, at the batch discount, like the Anthropic results route
    where = "key_id = ? AND endpoint = '/v1/messages/batches/results'"
    h.wait_for(lambda: usage_rows(where, (k["id"],)), what="batch usage row")
    got = usage_rows(where, (k["id"],))
    assert len(got) == 1, got
    assert got[0]["input_tokens"] == 3000 and got[0]["output_tokens"] == 300, got
    assert abs(got[0]["cost_usd"] - (3000 * 3 + 300 * 15) / 1e6 * 0.5) < 1e-12, got
    h.wait_for(lambda: usage_rows("key_id = ? AND endpoint = '/v1/batches/{id}/results'", (k["id"],)),
               what="results request row")
    # read again, through either shape: nothing more is accounted
    assert gw.req("GET", "/v1/batches/%s/results" % b["id"], headers={"x-api-key": k["key"]}).status == 200
    r = gw.req("GET", "/v1/messages/batches/%s/results" % b["id"],
               headers={"x-api-key": k["key"], "anthropic-version": "2023-06-01"})
    assert r.status == 200 and b'"succeeded"' in r.body
    time.sleep(0.3)
    assert len(usage_rows(where, (k["id"],))) == 1


def test_batch_models_checked_against_allowlist():
    k = gw.admin("POST", "/admin/keys", {"name": "oai-sonnet-only",
                                         "models": ["claude-sonnet-*"]}).json()
    mock.reset()
    r = gw.post("/v1/batches", {"requests": [{"custom_id": "a", "body": chat()},
                                             {"custom_id": "b", "body": chat("claude-opus-4-5")}]},
                {"x-api-key": k["key"]})
    e = assert_oai_error(r, 403, "permission_error")
    assert "claude-opus-4-5" in e["message"], e
    assert mock.requests() == []
    f = upload(jsonl([{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                       "body": chat("claude-opus-4-5")}]), key=k["key"])
    mock.reset()
    r = gw.post("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                "completion_window": "24h"}, {"x-api-key": k["key"]})
    assert_oai_error(r, 403, "permission_error")
    assert [x["path"] for x in mock.requests()] == ["/v1/files/%s/content" % f["id"]]
    r = gw.post("/v1/batches", {"requests": [{"custom_id": "a", "body": chat()}]},
                {"x-api-key": k["key"]})
    assert r.status == 200 and r.json()["status"] == "completed", r


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
