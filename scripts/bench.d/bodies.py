#!/usr/bin/env python3
"""bodies.py: writes the request bodies scripts/bench sends, into DIR.

  small.json   a small non-streaming /v1/messages call
  large.json   a ~300 KB Claude-Code-shaped call: long system prompt, 24 tools with JSON
               schemas, a long history with tool_use / tool_result turns
  stream.json  small, "stream": true
  chat.json    a small OpenAI-shaped /v1/chat/completions call

Deterministic (seeded), stdlib only. Usage: bodies.py DIR [LARGE_KB]
"""
import json
import os
import random
import sys

MODEL = "claude-sonnet-4-5-20250929"
WORDS = ("the a to of and in is for on that with as this be by are file code function return "
         "value test error module import class struct pointer buffer request response header "
         "stream event worker process socket thread memory cache key limit token usage model "
         "gateway upstream config path string number array object null true false index "
         "build make compile link library include define static const int char size_t void "
         "if else while for switch case break continue goto free malloc realloc json parse "
         "déjà naïve café — “quoted” ✓ 日本語").split()


def text(rng, n_words, newline_every=14):
    out = []
    for i in range(n_words):
        w = rng.choice(WORDS)
        out.append(w)
        if i % newline_every == newline_every - 1:
            out.append("\n")
    return " ".join(out).replace(" \n ", "\n")


def code(rng, lines):
    out = []
    for i in range(lines):
        ind = "    " * rng.randint(0, 3)
        out.append('%s%s(%s, "%s\\n"); /* %s */' % (ind, rng.choice(["printf", "gh_log", "snprintf", "evbuffer_add_printf"]),
                                                       rng.choice(["buf", "b", "out", "req"]),
                                                       text(rng, 4), text(rng, 5)))
    return "\n".join(out)


TOOL_NAMES = ["Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit",
              "Write", "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput",
              "KillShell", "SlashCommand", "mcp__ide__getDiagnostics", "mcp__ide__executeCode",
              "mcp__github__create_issue", "mcp__github__list_pull_requests",
              "mcp__github__get_file_contents", "mcp__linear__search_issues",
              "mcp__postgres__query"]


def tool(rng, name):
    props = {}
    for i in range(rng.randint(3, 8)):
        kind = rng.choice(["string", "number", "boolean", "array", "object", "enum"])
        pname = "%s_%d" % (rng.choice(["path", "pattern", "command", "timeout", "limit", "offset",
                                        "old_string", "new_string", "description", "url"]), i)
        if kind == "array":
            p = {"type": "array", "items": {"type": "object", "properties": {
                "content": {"type": "string", "minLength": 1},
                "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                "activeForm": {"type": "string", "minLength": 1}},
                "required": ["content", "status", "activeForm"], "additionalProperties": False},
                "description": text(rng, 30)}
        elif kind == "object":
            p = {"type": "object", "additionalProperties": {"type": "string"},
                 "description": text(rng, 25)}
        elif kind == "enum":
            p = {"type": "string", "enum": ["content", "files_with_matches", "count"],
                 "description": text(rng, 20)}
        else:
            p = {"type": kind, "description": text(rng, rng.randint(15, 60))}
        props[pname] = p
    return {
        "name": name,
        "description": text(rng, rng.randint(150, 700)),
        "input_schema": {"type": "object", "properties": props,
                         "required": sorted(props)[:2], "additionalProperties": False,
                         "$schema": "http://json-schema.org/draft-07/schema#"},
    }


def large(target_bytes):
    rng = random.Random(7)
    body = {
        "model": MODEL,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": text(rng, 9000), "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [tool(rng, n) for n in TOOL_NAMES],
        "messages": [],
        "metadata": {"user_id": "user_9f2c4e_account_3b1d_session_" + "%032x" % rng.getrandbits(128)},
        "temperature": 1,
    }
    msgs = body["messages"]
    msgs.append({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\n" + text(rng, 400) + "\n</system-reminder>"},
        {"type": "text", "text": "Please fix the failing test in server/proxy.c and explain why."}]})
    turn = 0
    while len(json.dumps(body, ensure_ascii=False).encode()) < target_bytes - 6000:
        turn += 1
        tid = "toolu_01%022x" % rng.getrandbits(88)
        name = rng.choice(["Read", "Grep", "Bash", "Edit", "Glob"])
        msgs.append({"role": "assistant", "content": [
            {"type": "text", "text": text(rng, rng.randint(20, 80))},
            {"type": "tool_use", "id": tid, "name": name,
             "input": {"file_path": "/work/main/server/file%d.c" % turn, "limit": 400,
                       "pattern": "gh_[a-z]+\\(", "command": "make -C build -j2 2>&1 | tail -40"}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tid,
             "content": code(rng, rng.randint(40, 120)) if name != "Bash" else text(rng, 300)}]})
    msgs.append({"role": "user", "content": "Now run the tests again and summarise the result."})
    msgs[-1]["content"] = [{"type": "text", "text": "Now run the tests again and summarise.",
                            "cache_control": {"type": "ephemeral"}}]
    s = json.dumps(body, ensure_ascii=False)
    # pad the last message so the body is target_bytes (give or take a few bytes)
    pad = target_bytes - len(s.encode())
    if pad > 0:
        msgs[-1]["content"][0]["text"] += " " + ("x" * (pad - 1))
    return json.dumps(body, ensure_ascii=False)


def main():
    d = sys.argv[1]
    kb = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    os.makedirs(d, exist_ok=True)
    small = {"model": MODEL, "max_tokens": 256,
             "messages": [{"role": "user", "content": "Say hello in five words."}]}
    files = {
        "small.json": json.dumps(small),
        "stream.json": json.dumps(dict(small, stream=True)),
        "chat.json": json.dumps({"model": MODEL, "max_tokens": 256, "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in five words."}]}),
        "large.json": large(kb * 1024),
    }
    for name, s in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(s.encode())


if __name__ == "__main__":
    main()
