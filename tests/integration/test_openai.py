"""test_openai.py: OpenAI-shaped clients through gatehouse: chat completions plain and streaming
(tool calls, usage chunk), Responses, legacy completions, errors in OpenAI's shape, the same
governance (allowlists, usage rows) as native requests, and unsupported operations."""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=2)
CHAT = {"model": "claude-sonnet-4-5",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}


def oai_events(body):
    out = []
    for block in body.decode().split("\n\n"):
        block = block.strip()
        if block.startswith("data: "):
            out.append(block[6:])
    return out


def row(rid):
    db = os.path.join(gw.data_dir, "gatehouse.db")
    found = []

    def look():
        c = sqlite3.connect(db)
        c.row_factory = sqlite3.Row
        found[:] = [dict(x) for x in c.execute("SELECT * FROM usage_log WHERE request_id = ?", (rid,))]
        c.close()
        return found
    h.wait_for(look, what="usage row")
    return found[0]


def test_chat_plain_translated_both_ways():
    mock.reset()
    r = gw.post("/v1/chat/completions", dict(CHAT, max_completion_tokens=50, stop=["END"],
                                               user="u-42", temperature=0.5, seed=7,
                                               presence_penalty=1),
                {"x-mock-input-tokens": "20", "x-mock-cache-read": "5", "x-mock-output-tokens": "3"})
    assert r.status == 200, r
    up = json.loads(mock.last()["body"])
    assert mock.last()["path"] == "/v1/messages"
    assert up["system"] == "be brief"
    assert len(up["messages"]) == 1 and up["messages"][0]["role"] == "user"
    content = up["messages"][0]["content"]
    text = content if isinstance(content, str) else "".join(b["text"] for b in content)
    assert text == "hi", up["messages"]
    assert up["max_tokens"] == 50 and up["stop_sequences"] == ["END"]
    assert up["metadata"] == {"user_id": "u-42"} and up["temperature"] == 0.5
    assert "seed" not in up and "presence_penalty" not in up
    c = r.json()
    assert c["object"] == "chat.completion"
    assert c["choices"][0]["message"]["content"] == "Hello from mock"
    assert c["choices"][0]["finish_reason"] == "stop"
    assert c["usage"] == {"prompt_tokens": 25, "completion_tokens": 3, "total_tokens": 28,
                          "prompt_tokens_details": {"cached_tokens": 5}}
    rw = row(r.headers["x-gatehouse-request-id"])
    assert rw["endpoint"] == "/v1/chat/completions" and rw["input_tokens"] == 20
    assert rw["cache_read_input_tokens"] == 5 and rw["status"] == 200


def test_chat_stream_with_tool_calls_and_usage_chunk():
    r = gw.post("/v1/chat/completions", dict(CHAT, stream=True, stream_options={"include_usage": True}),
                {"x-mock-scenario": "tool"})
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    evs = oai_events(r.body)
    assert evs[-1] == "[DONE]"
    chunks = [json.loads(e) for e in evs[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0][0]["id"] == "toolu_mock_1" and calls[0][0]["function"]["name"] == "get_weather"
    args = "".join(c[0]["function"]["arguments"] for c in calls)
    assert json.loads(args) == {"location": "Paris"}
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7


def test_tool_round_trip_request_mapping():
    mock.reset()
    body = {"model": "claude-sonnet-4-5", "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "d", "strict": True,
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required", "parallel_tool_calls": False,
        "messages": [{"role": "user", "content": "weather?"},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}
    r = gw.post("/v1/chat/completions", body)
    assert r.status == 200, r
    up = json.loads(mock.last()["body"])
    assert up["tools"][0]["name"] == "get_weather" and "strict" not in up["tools"][0]
    assert up["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert up["messages"][1]["content"][0]["type"] == "tool_use"
    assert up["messages"][1]["content"][0]["input"] == {"location": "Paris"}
    assert up["messages"][2]["content"][0]["type"] == "tool_result"
    bad = dict(body)
    bad["messages"] = [body["messages"][0], dict(body["messages"][1], tool_calls=[
        {"id": "c", "type": "function", "function": {"name": "x", "arguments": "{not json"}}])]
    r = gw.post("/v1/chat/completions", bad)
    assert r.status == 400 and "arguments" in r.json()["error"]["message"], r


def test_responses_plain_and_stream():
    r = gw.post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "hello",
                                   "instructions": "be brief", "max_output_tokens": 30})
    assert r.status == 200, r
    j = r.json()
    assert j["object"] == "response" and j["status"] == "completed"
    assert j["output"][0]["content"][0]["text"] == "Hello from mock"
    assert j["usage"]["input_tokens"] == 11
    r = gw.post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "hello", "stream": True})
    assert r.status == 200
    names = [e for e, _ in h.sse_events(r.body.decode())]
    assert names[0] == "response.created" and names[-1] == "response.completed", names
    assert "response.output_text.delta" in names
    r = gw.post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "x",
                                   "previous_response_id": "resp_1"})
    assert r.status == 400 and "previous_response_id" in r.json()["error"]["message"]


def test_legacy_completions():
    mock.reset()
    r = gw.post("/v1/completions", {"model": "claude-2.1", "prompt": "Say hi", "max_tokens": 20})
    assert mock.last()["path"] == "/v1/complete"
    up = json.loads(mock.last()["body"])
    assert up["prompt"] == "\n\nHuman: Say hi\n\nAssistant:" and up["max_tokens_to_sample"] == 20
    r = gw.post("/v1/completions", {"model": "claude-2.1", "prompt": "x", "stream": True})
    assert r.status == 400 and "stream" in r.json()["error"]["message"], r


def test_errors_in_openai_shape():
    r = h.request(gw.port, "POST", "/v1/chat/completions", CHAT, {"authorization": "Bearer nope"})
    assert r.status == 401 and r.json()["error"]["type"] == "authentication_error", r
    assert "type" not in r.json() or r.json().get("type") != "error"
    r = gw.post("/v1/chat/completions", dict(CHAT, n=2))
    assert r.status == 400 and r.json()["error"]["message"], r
    r = gw.post("/v1/chat/completions", CHAT, {"x-mock-scenario": "529"})
    assert r.status == 529, r
    e = r.json()["error"]
    assert e["message"] and e["type"], e
    k = gw.admin("POST", "/admin/keys", {"name": "only-haiku", "models": ["claude-haiku-*"]}).json()
    r = gw.post("/v1/chat/completions", CHAT, {"authorization": "Bearer " + k["key"]})
    assert r.status == 403 and r.json()["error"]["type"] == "permission_error", r
    r = gw.post("/v1/chat/completions", dict(CHAT, stream=True), {"x-mock-scenario": "sse-error"})
    evs = oai_events(r.body)
    assert any("error" in json.loads(e) for e in evs if e != "[DONE]"), evs


def test_unsupported_operations_name_themselves():
    for path, word in (("/v1/embeddings", "embeddings"), ("/v1/audio/speech", "speech"),
                       ("/v1/audio/transcriptions", "transcriptions"),
                       ("/v1/images/generations", "image")):
        r = gw.post(path, {"model": "x", "input": "y"})
        assert r.status == 400, r
        e = r.json()["error"]
        assert word in e["message"] and e["code"] == "unsupported_operation", e


def test_models_list_both_shapes():
    r = gw.req("GET", "/v1/models?limit=3")
    assert r.status == 200, r
    j = r.json()
    assert j["object"] == "list" and len(j["data"]) == 3 and j["has_more"] is True
    m = j["data"][0]
    assert m["type"] == "model" and m["object"] == "model" and m["id"] and m["display_name"]
    assert isinstance(m["created"], int) and m["created_at"].endswith("Z")
    r2 = gw.req("GET", "/v1/models?limit=3&after_id=" + j["last_id"])
    assert r2.json()["data"][0]["id"] != m["id"]
    assert h.request(gw.port, "GET", "/v1/models").status == 401


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
