"""test_betas.py: anthropic-beta handling end to end: what the client sends is forwarded
untouched, and the beta a body's feature needs is added when missing (the mock records the
header it received), for native and OpenAI-shaped requests."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

mock = h.Mock()
gw = h.Gateway(mock.url, workers=1)
BASE = {"model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"name": "t", "description": "d", "input_schema": {"type": "object", "properties": {}}}

CASES = [
    ("structured outputs", {"output_format": {"type": "json_schema", "schema": {"type": "object"}}},
     "structured-outputs-2025-11-13"),
    ("strict tool", {"tools": [dict(TOOL, strict=True)]}, "structured-outputs-2025-11-13"),
    ("advanced tool use", {"tools": [dict(TOOL, defer_loading=True)]}, "advanced-tool-use-2025-11-20"),
    ("mcp client", {"mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "x"}]},
     "mcp-client-2025-11-20"),
    ("prompt caching scope", {"system": [{"type": "text", "text": "s",
                                          "cache_control": {"type": "ephemeral", "scope": "global"}}]},
     "prompt-caching-scope-2026-01-05"),
    ("compaction", {"context_management": {"edits": [{"type": "compact_20260112"}]}},
     "compact-2026-01-12"),
    ("context management", {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
     "context-management-2025-06-27"),
    ("files", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}]},
     "files-api-2025-04-14"),
    ("fast mode", {"speed": "fast"}, "fast-mode-2026-02-01"),
    ("computer use", {"tools": [{"type": "computer_20250124", "name": "computer",
                                 "display_width_px": 1024, "display_height_px": 768}]},
     "computer-use-2025-01-24"),
]


def sent_beta():
    return mock.last()["headers"].get("anthropic-beta")


def test_each_feature_gets_its_beta():
    for name, extra, beta in CASES:
        mock.reset()
        r = gw.post("/v1/messages", dict(BASE, **extra))
        assert r.status == 200, (name, r)
        got = sent_beta()
        assert got is not None and beta in got.split(","), (name, got)


def test_client_betas_are_kept_first_and_not_duplicated():
    mock.reset()
    extra = CASES[0][1]
    r = gw.post("/v1/messages", dict(BASE, **extra),
                {"anthropic-beta": "interleaved-thinking-2025-05-14,structured-outputs-2025-11-13"})
    assert r.status == 200
    assert sent_beta() == "interleaved-thinking-2025-05-14,structured-outputs-2025-11-13"
    mock.reset()
    gw.post("/v1/messages", dict(BASE, **extra), {"anthropic-beta": "context-1m-2025-08-07"})
    assert sent_beta() == "context-1m-2025-08-07,structured-outputs-2025-11-13", sent_beta()


def test_no_beta_added_when_nothing_needs_one():
    mock.reset()
    gw.post("/v1/messages", BASE)
    assert sent_beta() is None
    mock.reset()
    gw.post("/v1/messages", BASE, {"anthropic-beta": "skills-2025-10-02"})
    assert sent_beta() == "skills-2025-10-02"
    # trigger words inside message text are not features
    mock.reset()
    gw.post("/v1/messages", dict(BASE, messages=[{"role": "user",
                                                  "content": "\"mcp_servers\" \"defer_loading\""}]))
    assert sent_beta() is None


def test_openai_structured_output_gets_its_beta():
    mock.reset()
    r = gw.post("/v1/chat/completions", {"model": "claude-sonnet-4-5", "messages": [
        {"role": "user", "content": "json please"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}})
    assert r.status == 200, r
    assert "structured-outputs-2025-11-13" in (sent_beta() or ""), sent_beta()


try:
    h.run(globals())
finally:
    gw.cleanup()
    mock.stop()
