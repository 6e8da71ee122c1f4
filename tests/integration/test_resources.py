"""test_resources.py: Message Batches and Files through gatehouse: per-key ownership (another key
gets 404), allowlists and routes applied to every batch request, JSONL results relayed as they
arrive and accounted once at the batch discount, streamed uploads and downloads, the files beta
added automatically, lists filtered to the caller's own resources, and the upload size limit."""
import json
import os
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2, extra_args=["--max-upload", "8M"])
other = gw.admin("POST", "/admin/keys", {"name": "other"}).json()["key"]
# /v1/files without anthropic-version answers in OpenAI's shape (test_oai_resources.py)
AV = {"anthropic-version": "2023-06-01"}


def batch_body(models):
    return {"requests": [{"custom_id": "r%d" % i, "params": {
        "model": m, "max_tokens": 10, "messages": [{"role": "user", "content": "hi %d" % i}]}}
        for i, m in enumerate(models)]}


def rows(where, args=()):
    c = sqlite3.connect(os.path.join(gw.data_dir, "gatehouse.db"))
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM usage_log WHERE " + where, args)]
    finally:
        c.close()


def test_batch_lifecycle_and_ownership():
    r = gw.post("/v1/messages/batches", batch_body(["claude-sonnet-4-5", "claude-haiku-4-5"]))
    assert r.status == 200, r
    b = r.json()
    assert b["type"] == "message_batch" and b["id"].startswith("msgbatch_")
    # results are fetched through gatehouse, never from the provider with the virtual key
    assert b["results_url"] == "http://127.0.0.1:%d/v1/messages/batches/%s/results" % (
        gw.port, b["id"]), b["results_url"]
    got = gw.req("GET", "/v1/messages/batches/" + b["id"]).json()
    assert got["id"] == b["id"] and str(gw.port) in got["results_url"], got
    lst = gw.req("GET", "/v1/messages/batches?limit=20").json()
    assert b["id"] in [x["id"] for x in lst["data"]]
    # another key sees nothing of it
    for method, path in (("GET", "/v1/messages/batches/" + b["id"]),
                         ("GET", "/v1/messages/batches/" + b["id"] + "/results"),
                         ("POST", "/v1/messages/batches/" + b["id"] + "/cancel"),
                         ("DELETE", "/v1/messages/batches/" + b["id"])):
        r = gw.req(method, path, headers={"x-api-key": other})
        assert r.status == 404 and r.json()["error"]["type"] == "not_found_error", (path, r)
    lst = gw.req("GET", "/v1/messages/batches", headers={"x-api-key": other}).json()
    assert b["id"] not in [x["id"] for x in lst["data"]]
    r = gw.post("/v1/messages/batches/%s/cancel" % b["id"], {})
    assert r.status == 200 and r.json()["cancel_initiated_at"], r


def test_batch_requests_checked_and_routed():
    k = gw.admin("POST", "/admin/keys", {"name": "sonnet-only", "models": ["claude-sonnet-*"]}).json()
    mock.reset()
    r = gw.post("/v1/messages/batches", batch_body(["claude-sonnet-4-5", "claude-opus-4-5"]),
                {"x-api-key": k["key"]})
    assert r.status == 403 and "claude-opus-4-5" in r.json()["error"]["message"], r
    assert mock.requests() == []
    assert gw.admin("POST", "/admin/routes", {"name": "team-default", "targets": [
        {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929"}]}).status == 201
    r = gw.post("/v1/messages/batches", batch_body(["team-default"]))
    assert r.status == 200, r
    sent = json.loads(mock.last()["body"])
    assert sent["requests"][0]["params"]["model"] == "claude-sonnet-4-5-20250929"
    r = gw.post("/v1/messages/batches", {"requests": [{"custom_id": "x", "params": {}}]})
    assert r.status == 400 and "params.model" in r.json()["error"]["message"], r


def test_batch_results_stream_and_are_accounted_once():
    k = gw.admin("POST", "/admin/keys", {"name": "batcher"}).json()
    hdr = {"x-api-key": k["key"], "x-mock-input-tokens": "1000", "x-mock-output-tokens": "100"}
    b = gw.post("/v1/messages/batches", batch_body(["claude-sonnet-4-5"] * 4), hdr).json()
    chunks = list(h.raw_stream(gw.port, "/v1/messages/batches/%s/results" % b["id"], b"",
                               {"x-api-key": k["key"], "x-mock-results-interval-ms": "250"},
                               method="GET"))
    raw = b"".join(c for _, c in chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    lines = [json.loads(x) for x in h.dechunk(body).decode().splitlines() if x]
    assert [x["custom_id"] for x in lines] == ["r0", "r1", "r2", "r3"]
    assert all(x["result"]["type"] == "succeeded" for x in lines)
    # relayed as they arrived: the first line well before the last
    t_first = next(t for t, c in chunks if b"custom_id" in c)
    assert chunks[-1][0] - t_first > 0.5, (t_first, chunks[-1][0])
    # usage at the batch discount (sonnet 3/15 per million, halved), written once
    h.wait_for(lambda: rows("key_id = ? AND endpoint = '/v1/messages/batches/results'", (k["id"],)),
               what="batch usage row")
    got = rows("key_id = ? AND endpoint = '/v1/messages/batches/results'", (k["id"],))
    assert len(got) == 1, got
    assert got[0]["input_tokens"] == 4000 and got[0]["output_tokens"] == 400, got
    assert abs(got[0]["cost_usd"] - (4000 * 3 + 400 * 15) / 1e6 * 0.5) < 1e-12, got
    r = gw.req("GET", "/v1/messages/batches/%s/results" % b["id"], headers={"x-api-key": k["key"]})
    assert r.status == 200
    time.sleep(0.3)
    assert len(rows("key_id = ? AND endpoint = '/v1/messages/batches/results'", (k["id"],))) == 1


def multipart(name, data, ctype="application/octet-stream"):
    boundary = "----ghtestboundary7MA4YWxkTrZu0gW"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: %s\r\n\r\n" % (boundary, name, ctype)).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    return body, "multipart/form-data; boundary=" + boundary


def test_files_upload_download_delete_and_ownership():
    data = os.urandom(3 * 1024 * 1024 + 17)
    body, ctype = multipart("blob.bin", data)
    mock.reset()
    r = gw.post("/v1/files", body, dict(AV, **{"content-type": ctype}))  # no beta header from the client
    assert r.status == 200, r
    f = r.json()
    assert f["id"].startswith("file_") and f["size_bytes"] == len(data) and f["filename"] == "blob.bin"
    up = mock.last()
    assert "files-api-2025-04-14" in up["headers"]["anthropic-beta"]
    assert up["body_len"] == len(body)
    meta = gw.req("GET", "/v1/files/" + f["id"], headers=AV).json()
    assert meta["id"] == f["id"]
    r = gw.req("GET", "/v1/files/%s/content" % f["id"], headers=AV)
    assert r.status == 200 and r.body == data
    assert f["id"] in [x["id"] for x in gw.req("GET", "/v1/files", headers=AV).json()["data"]]
    assert f["id"] not in [x["id"] for x in gw.req("GET", "/v1/files", headers=dict(AV, **{"x-api-key": other})).json()["data"]]
    for method, path in (("GET", "/v1/files/" + f["id"]), ("GET", "/v1/files/%s/content" % f["id"]),
                         ("DELETE", "/v1/files/" + f["id"])):
        assert gw.req(method, path, headers=dict(AV, **{"x-api-key": other})).status == 404
    r = gw.req("DELETE", "/v1/files/" + f["id"], headers=AV)
    assert r.status == 200 and r.json()["type"] == "file_deleted", r
    assert gw.req("GET", "/v1/files/" + f["id"], headers=AV).status == 404


def test_upload_over_the_limit_is_413_and_chunked_upload_works():
    body, ctype = multipart("big.bin", b"x" * (9 * 1024 * 1024))
    r = gw.post("/v1/files", body, dict(AV, **{"content-type": ctype}))
    assert r.status == 413 and r.json()["error"]["type"] == "request_too_large", r
    # a chunked upload streams through too
    data = os.urandom(200000)
    body, ctype = multipart("c.bin", data)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
    s.sendall(("POST /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-api-key: %s\r\n"
               "anthropic-version: 2023-06-01\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
               % (gw.key, ctype)).encode())
    for i in range(0, len(body), 65536):
        piece = body[i:i + 65536]
        s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    s.sendall(b"0\r\n\r\n")
    resp = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        resp += b
    s.close()
    head, _, rest = resp.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], resp[:300]
    j = json.loads(h.dechunk(rest) if b"chunked" in head.lower() else rest)
    assert j["size_bytes"] == len(data)


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
