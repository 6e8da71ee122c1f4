// claude-code.test.mjs: the real Claude Code CLI (npm @anthropic-ai/claude-code), headless
// (`claude -p`), with ANTHROPIC_BASE_URL = gatehouse and a virtual key, against gh-mock.
//
// What Claude Code 2.1.330 calls through gatehouse (seen with the mock recorder and a recording
// proxy in front of gatehouse, see "what Claude Code sends" below):
//   - POST /v1/messages?beta=true, streaming (`"stream": true`), one per turn; headers
//     x-api-key: <ANTHROPIC_API_KEY> or authorization: Bearer <ANTHROPIC_AUTH_TOKEN>,
//     anthropic-version: 2023-06-01, anthropic-beta: claude-code-20250219,
//     interleaved-thinking-2025-05-14, context-management-2025-06-27, ... (forwarded untouched),
//     anthropic-dangerous-direct-browser-access: true, x-app: cli,
//     x-claude-code-session-id, user-agent: claude-cli/<version> (external, sdk-cli), and the
//     x-stainless-* SDK headers. Default model (no ANTHROPIC_MODEL): claude-opus-5-5.
//   - GET /v1/models?limit=1000 (gateway model discovery) only with
//     CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1; headers authorization: Bearer <token> and/or
//     x-api-key, anthropic-version: 2023-06-01; it keeps ids matching /claude|anthropic/ in
//     ~/.claude/cache/gateway-models.json.
//   - Nothing else reaches the gateway in -p mode: no count_tokens, no HEAD /, no /api/hello.
//     (Without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC it also tries the MCP registry on
//     api.anthropic.com directly, not through ANTHROPIC_BASE_URL; that fails offline, harmlessly.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, startProxy, Mock, Gateway, hdr, http, KNOWN_BUG, PROVIDER_KEY } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLAUDE = path.join(here, 'node_modules', '.bin', 'claude');
const MOCK_MODELS = [
  'claude-sonnet-4-5-20250929',
  'claude-haiku-4-5-20251001',
  'claude-opus-4-1-20250805',
  'claude-sonnet-4-20250514',
  'claude-opus-4-20250514',
];

let stack, gw, mock;
const homes = [];

before(async () => {
  assert.ok(fs.existsSync(CLAUDE), `${CLAUDE} missing: run npm ci in tests/e2e (scripts/e2e does)`);
  stack = await startStack();
  ({ gw, mock } = stack);
});

after(async () => {
  await stack?.stop();
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
});

/**
 * Runs claude with args in a fresh HOME (also its working directory) and only the environment
 * given here plus PATH; resolves {code, signal, stdout, stderr, home, json()}.
 */
function runClaude(args, env, { timeoutMs = 60000 } = {}) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-e2e-claude-'));
  homes.push(home);
  const fullEnv = {
    PATH: process.env.PATH,
    HOME: home,
    LANG: 'C.UTF-8',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    ...env,
  };
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined) delete fullEnv[k];
  return new Promise((resolve, reject) => {
    const child = spawn(CLAUDE, args, { cwd: home, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout,
        stderr,
        home,
        json() {
          return JSON.parse(stdout);
        },
        toString() {
          return `exit ${code} ${signal || ''}\nstdout: ${stdout}\nstderr: ${stderr}`;
        },
      });
    });
  });
}

/** Upstream Messages calls recorded by a mock since its last reset, bodies parsed. */
async function upstreamMessages(m = mock) {
  return (await m.apiRequests())
    .filter((r) => r.method === 'POST' && r.path === '/v1/messages')
    .map((r) => ({ ...r, json: JSON.parse(r.body) }));
}

/** Checks the usage_log rows of key k: one per upstream Messages call, with the mock's tokens. */
async function checkUsage(g, k, calls, model) {
  const rows = await g.waitUsage(calls.length, { keyId: k.id, pred: (r) => r.endpoint === '/v1/messages' });
  assert.equal(rows.length, calls.length, 'one usage_log row per upstream call');
  for (const [i, r] of rows.entries()) {
    assert.equal(r.status, 200);
    assert.equal(r.model_requested, calls[i].json.model);
    if (model) assert.equal(r.model, model);
    assert.equal(r.input_tokens, 11);
    assert.equal(r.output_tokens, 7);
    assert.equal(r.stream, calls[i].json.stream ? 1 : 0);
    assert.equal(r.error_type, null);
  }
  return rows;
}

test('claude -p with ANTHROPIC_API_KEY: plain answer, JSON output, usage logged', async () => {
  const k = await gw.createKey({ name: 'claude-code-api-key' });
  await mock.reset();
  const r = await runClaude(['-p', 'say hello', '--output-format', 'json'], {
    ANTHROPIC_BASE_URL: gw.url,
    ANTHROPIC_API_KEY: k.key,
    ANTHROPIC_MODEL: 'claude-sonnet-4-5',
  });
  assert.equal(r.code, 0, String(r));
  const out = r.json();
  assert.equal(out.type, 'result');
  assert.equal(out.subtype, 'success');
  assert.equal(out.is_error, false);
  assert.equal(out.result.trim(), 'w0 w1 w2');

  const calls = await upstreamMessages();
  assert.ok(calls.length >= 1, 'Claude Code called /v1/messages');
  for (const c of calls) {
    assert.equal(c.query, 'beta=true');
    assert.equal(hdr(c, 'x-api-key'), PROVIDER_KEY, 'gatehouse swapped in the provider key');
    assert.ok(!JSON.stringify(c.headers).includes(k.key), 'the virtual key never goes upstream');
    assert.match(hdr(c, 'user-agent'), /^claude-cli\//);
    assert.match(hdr(c, 'anthropic-beta'), /claude-code-20250219/);
    assert.equal(c.json.model, 'claude-sonnet-4-5');
  }
  const rows = await checkUsage(gw, k, calls, 'claude-sonnet-4-5');
  // claude-sonnet-4-5* costs $3 / $15 per million input / output tokens.
  for (const row of rows) assert.ok(Math.abs(row.cost_usd - (11 * 3 + 7 * 15) / 1e6) < 1e-12, `cost ${row.cost_usd}`);
  // What Claude Code reports agrees with the usage log.
  assert.equal(out.usage.input_tokens, 11 * rows.length);
  assert.equal(out.usage.output_tokens, 7 * rows.length);
});

test('claude -p with ANTHROPIC_AUTH_TOKEN: plain answer, text output, usage logged', async () => {
  const k = await gw.createKey({ name: 'claude-code-auth-token' });
  await mock.reset();
  const r = await runClaude(['-p', 'say hello', '--output-format', 'text'], {
    ANTHROPIC_BASE_URL: gw.url,
    ANTHROPIC_AUTH_TOKEN: k.key,
  });
  assert.equal(r.code, 0, String(r));
  assert.equal(r.stdout.trim(), 'w0 w1 w2');
  const calls = await upstreamMessages();
  assert.ok(calls.length >= 1);
  for (const c of calls) assert.equal(hdr(c, 'authorization'), undefined, 'no client Authorization goes upstream');
  await checkUsage(gw, k, calls);
});

test('claude -p with ANTHROPIC_BASE_URL = gatehouse/anthropic', async () => {
  const k = await gw.createKey({ name: 'claude-code-prefix' });
  await mock.reset();
  const r = await runClaude(['-p', 'say hello'], { ANTHROPIC_BASE_URL: `${gw.url}/anthropic`, ANTHROPIC_API_KEY: k.key });
  assert.equal(r.code, 0, String(r));
  assert.equal(r.stdout.trim(), 'w0 w1 w2');
  await checkUsage(gw, k, await upstreamMessages());
});

test('what Claude Code sends: endpoints and headers, every one answered by gatehouse', async () => {
  const k = await gw.createKey({ name: 'claude-code-seen' });
  const front = await startProxy(gw.url);
  try {
    for (const [style, env] of [
      ['api-key', { ANTHROPIC_API_KEY: k.key }],
      ['auth-token', { ANTHROPIC_AUTH_TOKEN: k.key }],
    ]) {
      front.records.length = 0;
      const r = await runClaude(['-p', 'say hello', '--output-format', 'json'], {
        ANTHROPIC_BASE_URL: front.url,
        CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY: '1',
        ...env,
      });
      assert.equal(r.code, 0, String(r));
      const seen = front.records.map((x) => `${x.method} ${x.path} -> ${x.status}`);
      // Every request Claude Code made got a success from gatehouse (nothing it needs is missing).
      for (const x of front.records) assert.ok(x.status >= 200 && x.status < 300, `${style}: ${seen.join(', ')}`);
      const msgs = front.records.filter((x) => x.method === 'POST' && x.path.startsWith('/v1/messages'));
      assert.ok(msgs.length >= 1, seen.join(', '));
      const models = front.records.filter((x) => x.method === 'GET' && x.path.startsWith('/v1/models'));
      assert.deepEqual(models.map((x) => x.path), ['/v1/models?limit=1000'], seen.join(', '));
      const other = front.records.filter((x) => !msgs.includes(x) && !models.includes(x));
      assert.deepEqual(other.map((x) => `${x.method} ${x.path}`), [], 'no other endpoint');
      for (const x of [...msgs, ...models]) {
        assert.equal(x.headers['anthropic-version'], '2023-06-01');
        if (style === 'api-key') assert.equal(x.headers['x-api-key'], k.key, `${x.path}: ${JSON.stringify(x.headers)}`);
        else assert.equal(x.headers.authorization, `Bearer ${k.key}`, `${x.path}: ${JSON.stringify(x.headers)}`);
      }
      for (const x of msgs) {
        assert.equal(x.path, '/v1/messages?beta=true');
        assert.equal(x.headers['x-app'], 'cli');
        assert.equal(JSON.parse(x.body).stream, true);
      }
    }
  } finally {
    await front.stop();
  }
});

test('gateway model discovery: GET /v1/models?limit=1000 lists the key\'s models', async () => {
  for (const [name, models, expected, model] of [
    ['claude-code-discovery', undefined, MOCK_MODELS, undefined],
    ['claude-code-discovery-haiku', ['claude-haiku-*'], ['claude-haiku-4-5-20251001'], 'claude-haiku-4-5'],
  ]) {
    const k = await gw.createKey(models ? { name, models } : { name });
    const r = await runClaude(['-p', 'say hello'], {
      ANTHROPIC_BASE_URL: gw.url,
      ANTHROPIC_AUTH_TOKEN: k.key,
      ANTHROPIC_MODEL: model,
      CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY: '1',
    });
    assert.equal(r.code, 0, String(r));
    assert.equal(r.stdout.trim(), 'w0 w1 w2');
    const cacheFile = path.join(r.home, '.claude', 'cache', 'gateway-models.json');
    assert.ok(fs.existsSync(cacheFile), 'Claude Code cached the discovered models');
    const cache = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
    assert.equal(cache.baseUrl, gw.url);
    assert.deepEqual(cache.models.map((m) => m.id), expected);
    assert.ok(cache.models.every((m) => m.display_name));
    const rows = await gw.waitUsage(1, { keyId: k.id, pred: (x) => x.endpoint === '/v1/models' });
    assert.equal(rows[0].status, 200);
  }
});

test('tool call: the mock asks for a tool, Claude Code answers it and completes the turn', async () => {
  // gh-mock's `tool` scenario answers every request with a tool_use, so a shim between
  // gatehouse and the mock asks for it only when the conversation holds no tool_result yet.
  const m2 = await Mock.start();
  const shim = await startProxy(m2.url, {
    onRequest(req) {
      if (req.method !== 'POST' || !req.path.startsWith('/v1/messages')) return;
      let body;
      try {
        body = JSON.parse(req.body);
      } catch {
        return;
      }
      const last = body.messages?.at(-1);
      const hasResult = Array.isArray(last?.content) && last.content.some((b) => b.type === 'tool_result');
      if (!hasResult && req.path.split('?')[0] === '/v1/messages') req.headers['x-mock-scenario'] = 'tool';
    },
  });
  const g2 = await Gateway.start({ baseURL: shim.url });
  try {
    const k = await g2.createKey({ name: 'claude-code-tool' });
    const r = await runClaude(['-p', 'What is the weather in Paris?', '--output-format', 'json'], {
      ANTHROPIC_BASE_URL: g2.url,
      ANTHROPIC_API_KEY: k.key,
      ANTHROPIC_MODEL: 'claude-sonnet-4-5',
    });
    assert.equal(r.code, 0, String(r));
    const out = r.json();
    assert.equal(out.is_error, false, String(r));
    assert.equal(out.result.trim(), 'w0 w1 w2');
    assert.equal(out.num_turns, 2);

    const calls = await upstreamMessages(m2);
    assert.equal(calls.length, 2, calls.map((c) => c.body.slice(0, 200)).join('\n'));
    // The second call carries Claude Code's tool_result for the mock's tool_use. get_weather is
    // not one of Claude Code's tools, so the result is its "no such tool" error.
    const msgs = calls[1].json.messages;
    const use = msgs.at(-2).content.find((b) => b.type === 'tool_use');
    assert.equal(use.id, 'toolu_mock_1');
    assert.equal(use.name, 'get_weather');
    const result = msgs.at(-1).content.find((b) => b.type === 'tool_result');
    assert.equal(result.tool_use_id, 'toolu_mock_1');
    assert.equal(result.is_error, true);
    await checkUsage(g2, k, calls, 'claude-sonnet-4-5');
  } finally {
    await g2.stop();
    await shim.stop();
    await m2.stop();
  }
});

test('a model outside the key\'s allowlist: Claude Code fails at once with gatehouse\'s 403', async () => {
  const k = await gw.createKey({ name: 'claude-code-haiku-only', models: ['claude-haiku-*'] });
  await mock.reset();
  // (claude-opus-4-1 would not do: Claude Code remaps that retired model to its latest Opus.)
  const r = await runClaude(['-p', 'say hello', '--output-format', 'json'], {
    ANTHROPIC_BASE_URL: gw.url,
    ANTHROPIC_API_KEY: k.key,
    ANTHROPIC_MODEL: 'claude-sonnet-4-5',
  });
  assert.equal(r.code, 1, String(r));
  const out = r.json();
  assert.equal(out.is_error, true);
  assert.equal(out.api_error_status, 403);
  assert.match(out.result, /claude-sonnet-4-5.*not allowed/);
  assert.equal((await upstreamMessages()).length, 0, 'nothing went upstream');
  const rows = await gw.waitUsage(1, { keyId: k.id });
  assert.ok(rows.every((x) => x.status === 403 && x.error_type));
});

test('a refused key: Claude Code fails with the 401', async () => {
  await mock.reset();
  // Claude Code retries a 401 up to 10 times with back-off (minutes) unless the answer says
  // x-should-retry: false, which gatehouse does not send (see the next test); so no retries here.
  const r = await runClaude(['-p', 'say hello', '--output-format', 'json'], {
    ANTHROPIC_BASE_URL: gw.url,
    ANTHROPIC_API_KEY: 'gh-vk-not-a-key',
    CLAUDE_CODE_MAX_RETRIES: '0',
  });
  assert.equal(r.code, 1, String(r));
  const out = r.json();
  assert.equal(out.is_error, true);
  assert.equal(out.api_error_status, 401);
  assert.match(out.result, /401/);
  assert.equal((await upstreamMessages()).length, 0);
});

test('gatehouse\'s own 401/403 refusals say x-should-retry: false (Claude Code then gives up at once)', async () => {
  const denied = await gw.createKey({ name: 'claude-code-no-retry', models: ['claude-haiku-*'] });
  const body = { model: 'claude-sonnet-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };
  for (const [key, status] of [['gh-vk-not-a-key', 401], [denied.key, 403]]) {
    const r = await http(`${gw.url}/v1/messages`, { method: 'POST', body, headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01' } });
    assert.equal(r.status, status);
    assert.equal(r.headers.get('x-should-retry'), 'false', `${status}`);
  }
});
