// anthropic.test.mjs: the official @anthropic-ai/sdk against gatehouse in front of gh-mock.
// baseURL = gatehouse, apiKey = a virtual key; nothing else changes for the client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { startStack, hdr, http, KNOWN_BUG } from './lib.mjs';

// The SDK reads ANTHROPIC_* from the environment when no credential is passed; keep the tests
// independent of whatever the shell running them has.
for (const k of ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL', 'ANTHROPIC_CUSTOM_HEADERS']) delete process.env[k];

// claude-sonnet-4-5 makes this SDK print a deprecation warning on every call; haiku does not.
const MODEL = 'claude-haiku-4-5';
const MOCK_MODELS = [
  'claude-sonnet-4-5-20250929',
  'claude-haiku-4-5-20251001',
  'claude-opus-4-1-20250805',
  'claude-sonnet-4-20250514',
  'claude-opus-4-20250514',
];

let stack, gw, mock, client;

/** A fetch that remembers each request's URL, method and headers (what the SDK really sent). */
function spyFetch() {
  const calls = [];
  const f = (url, init = {}) => {
    calls.push({ url: String(url), method: init.method || 'GET', headers: Object.fromEntries(new Headers(init.headers)) });
    return fetch(url, init);
  };
  return { fetch: f, calls };
}

function newClient(opts = {}) {
  return new Anthropic({ baseURL: gw.url, apiKey: gw.key, maxRetries: 0, timeout: 30000, ...opts });
}

const user = (text) => [{ role: 'user', content: text }];

before(async () => {
  stack = await startStack();
  ({ gw, mock } = stack);
  client = newClient();
});

after(async () => {
  await stack?.stop();
});

test('messages.create: plain answer, relayed with the provider key', async () => {
  const spy = spyFetch();
  const c = newClient({ fetch: spy.fetch });
  await mock.reset();
  const mark = gw.usageMark();
  const msg = await c.messages.create({ model: MODEL, max_tokens: 100, messages: user('Say hello') });
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.model, MODEL);
  assert.equal(msg.content[0].type, 'text');
  assert.equal(msg.content[0].text, 'Hello from mock');
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.usage.input_tokens, 11);
  assert.equal(msg.usage.output_tokens, 7);

  const [up] = await mock.apiRequests();
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/messages');
  assert.equal(hdr(up, 'x-api-key'), 'sk-ant-e2e-provider-secret-0001', 'upstream sees the provider key');
  assert.ok(!JSON.stringify(up.headers).includes(gw.key), 'the virtual key never goes upstream');
  // SDK headers pass through (anthropic-version, x-stainless-*).
  assert.equal(hdr(up, 'anthropic-version'), spy.calls[0].headers['anthropic-version']);
  assert.equal(hdr(up, 'x-stainless-lang'), 'js');
  assert.deepEqual(JSON.parse(up.body), { model: MODEL, max_tokens: 100, messages: user('Say hello') });

  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/messages' && r.stream === 0 });
  assert.equal(row.endpoint, '/v1/messages');
  assert.equal(row.status, 200);
  assert.equal(row.model_requested, MODEL);
  assert.equal(row.input_tokens, 11);
  assert.equal(row.output_tokens, 7);
  assert.equal(row.stream, 0);
  // claude-haiku-4-5* is priced $1 / $5 per million input / output tokens.
  assert.ok(Math.abs(row.cost_usd - (11 * 1 + 7 * 5) / 1e6) < 1e-12, `cost ${row.cost_usd}`);
});

test('messages.stream: text events and finalMessage', async () => {
  const mark = gw.usageMark();
  const stream = client.messages.stream(
    { model: MODEL, max_tokens: 100, messages: user('Count to three') },
    { headers: { 'x-mock-events': '3' } },
  );
  const texts = [];
  stream.on('text', (t) => texts.push(t));
  const final = await stream.finalMessage();
  assert.deepEqual(texts, ['w0 ', 'w1 ', 'w2 ']);
  assert.equal(final.content.length, 1);
  assert.equal(final.content[0].text, 'w0 w1 w2 ');
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.usage.output_tokens, 7);
  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/messages' && r.stream === 1 });
  assert.equal(row.endpoint, '/v1/messages');
  assert.equal(row.stream, 1);
  assert.equal(row.output_tokens, 7);
  assert.equal(row.input_tokens, 11);
});

test('messages.create with stream: true: raw event sequence', async () => {
  const events = [];
  for await (const ev of await client.messages.create({ model: MODEL, max_tokens: 50, stream: true, messages: user('hi') })) {
    events.push(ev.type);
  }
  // The SDK drops `ping` events; the rest is Anthropic's sequence as the mock sent it.
  assert.deepEqual(events, [
    'message_start',
    'content_block_start',
    'content_block_delta',
    'content_block_delta',
    'content_block_delta',
    'content_block_stop',
    'message_delta',
    'message_stop',
  ]);
});

const weatherTool = {
  name: 'get_weather',
  description: 'Current weather of a city',
  input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
};

test('tool use: tool_use answer, then tool_result round trip', async () => {
  const toolClient = newClient({ defaultHeaders: { 'x-mock-scenario': 'tool' } });
  const first = await toolClient.messages.create({
    model: MODEL,
    max_tokens: 200,
    tools: [weatherTool],
    messages: user('Weather in Paris?'),
  });
  assert.equal(first.stop_reason, 'tool_use');
  const use = first.content.find((b) => b.type === 'tool_use');
  assert.ok(use, JSON.stringify(first.content));
  assert.equal(use.id, 'toolu_mock_1');
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { location: 'Paris' });

  await mock.reset();
  const second = await client.messages.create({
    model: MODEL,
    max_tokens: 200,
    tools: [weatherTool],
    messages: [
      ...user('Weather in Paris?'),
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18°C, sunny' }] },
    ],
  });
  assert.equal(second.content[0].text, 'Hello from mock');
  const [up] = await mock.apiRequests();
  const body = JSON.parse(up.body);
  assert.equal(body.messages[2].content[0].type, 'tool_result');
  assert.equal(body.messages[2].content[0].tool_use_id, 'toolu_mock_1');
  assert.equal(body.messages[2].content[0].content, '18°C, sunny', 'UTF-8 relayed byte for byte');
});

test('tool use, streaming: input_json deltas assemble the tool input', async () => {
  const stream = client.messages.stream(
    { model: MODEL, max_tokens: 200, tools: [weatherTool], messages: user('Weather in Paris?') },
    { headers: { 'x-mock-scenario': 'tool' } },
  );
  const partial = [];
  stream.on('inputJson', (delta) => partial.push(delta));
  const final = await stream.finalMessage();
  assert.equal(final.stop_reason, 'tool_use');
  assert.equal(final.content[0].type, 'text');
  assert.equal(final.content[0].text, 'Let me check');
  assert.equal(final.content[1].type, 'tool_use');
  assert.deepEqual(final.content[1].input, { location: 'Paris' });
  assert.equal(partial.join(''), '{"location": "Paris"}');
});

test('beta messages: ?beta=true and anthropic-beta pass through', async () => {
  await mock.reset();
  // This SDK version no longer adds ?beta=true by itself (Claude Code does): ask for it.
  const msg = await client.beta.messages.create(
    { model: MODEL, max_tokens: 50, betas: ['interleaved-thinking-2025-05-14'], messages: user('hi') },
    { query: { beta: 'true' } },
  );
  assert.equal(msg.content[0].text, 'Hello from mock');
  const [up] = await mock.apiRequests();
  assert.equal(up.path, '/v1/messages');
  assert.equal(up.query, 'beta=true');
  assert.match(hdr(up, 'anthropic-beta'), /interleaved-thinking-2025-05-14/);
});

test('structured output: the SDK\'s output_config.format is relayed untouched, client betas kept', async () => {
  await mock.reset();
  const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'], additionalProperties: false };
  // This SDK turns the deprecated output_format into output_config.format (GA, no beta needed).
  await client.beta.messages.create({
    model: MODEL,
    max_tokens: 50,
    betas: ['interleaved-thinking-2025-05-14'],
    output_format: { type: 'json_schema', schema },
    messages: user('hi'),
  });
  const [up] = await mock.apiRequests();
  assert.deepEqual(JSON.parse(up.body).output_config, { format: { type: 'json_schema', schema } });
  const betas = hdr(up, 'anthropic-beta').split(',').map((b) => b.trim());
  assert.ok(betas.includes('interleaved-thinking-2025-05-14'), betas.join());
});

test('baseURL under /anthropic works the same', async () => {
  const c = newClient({ baseURL: `${gw.url}/anthropic` });
  const msg = await c.messages.create({ model: MODEL, max_tokens: 50, messages: user('hi') });
  assert.equal(msg.content[0].text, 'Hello from mock');
});

test('count_tokens: relayed and logged with no token cost', async () => {
  await mock.reset();
  const mark = gw.usageMark();
  const r = await client.messages.countTokens({ model: MODEL, messages: user('How many tokens?') });
  assert.equal(r.input_tokens, 11);
  const [up] = await mock.apiRequests();
  assert.equal(up.path, '/v1/messages/count_tokens');
  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/messages/count_tokens' });
  assert.equal(row.endpoint, '/v1/messages/count_tokens');
  assert.equal(row.status, 200);
  assert.equal(row.model_requested, MODEL);
  assert.equal(row.input_tokens, 0);
  assert.equal(row.output_tokens, 0);
  assert.equal(row.cost_usd, 0);
});

const batchRequests = [
  { custom_id: 'req-1', params: { model: MODEL, max_tokens: 50, messages: user('first') } },
  { custom_id: 'req-2', params: { model: MODEL, max_tokens: 50, messages: user('second') } },
];

/** Checks the two results of a batch created from batchRequests. */
function checkResults(results) {
  assert.deepEqual(results.map((r) => r.custom_id), ['req-1', 'req-2']);
  for (const r of results) {
    assert.equal(r.result.type, 'succeeded');
    assert.equal(r.result.message.content[0].text, 'Hello from mock');
    assert.equal(r.result.message.usage.input_tokens, 11);
  }
}

test('batches: create, retrieve, list, results through the SDK', async () => {
  const batch = await client.messages.batches.create({ requests: batchRequests });
  assert.equal(batch.type, 'message_batch');
  assert.match(batch.id, /^msgbatch_/);
  const got = await client.messages.batches.retrieve(batch.id);
  assert.equal(got.id, batch.id);
  assert.equal(got.processing_status, 'ended');
  assert.equal(got.request_counts.succeeded, 2);
  const listed = [];
  for await (const b of client.messages.batches.list({ limit: 10 })) listed.push(b.id);
  assert.ok(listed.includes(batch.id), `${batch.id} in ${listed}`);

  // The SDK reads results from the batch's results_url (not from baseURL + path).
  const results = [];
  for await (const r of await client.messages.batches.results(batch.id)) results.push(r);
  checkResults(results);
});

test('batches: results_url points at gatehouse, so SDK results are read through it', async () => {
  const batch = await client.messages.batches.create({ requests: batchRequests });
  const got = await client.messages.batches.retrieve(batch.id);
  assert.ok(got.results_url.startsWith(`${gw.url}/`), `results_url ${got.results_url} should start with ${gw.url}/`);
  await mock.reset();
  const spy = spyFetch();
  const c = newClient({ fetch: spy.fetch });
  for await (const r of await c.messages.batches.results(batch.id)) assert.ok(r.custom_id);
  for (const r of await mock.apiRequests()) {
    assert.ok(!JSON.stringify(r.headers).includes(gw.key), `the virtual key reached the upstream on ${r.path}`);
  }
  const resultsCall = spy.calls.find((x) => x.url.includes('/results'));
  assert.ok(resultsCall.url.startsWith(gw.url), `SDK fetched ${resultsCall.url}`);
  const up = (await mock.apiRequests()).find((r) => r.path.endsWith('/results'));
  assert.equal(hdr(up, 'x-api-key'), 'sk-ant-e2e-provider-secret-0001');
});

test('batches: results read through gatehouse are JSONL, accounted at the batch discount', async () => {
  const batch = await client.messages.batches.create({ requests: batchRequests });
  // The results path on gatehouse itself (what results_url should name).
  const r = await http(`${gw.url}/v1/messages/batches/${batch.id}/results`, {
    headers: { 'x-api-key': gw.key, 'anthropic-version': '2023-06-01' },
  });
  assert.equal(r.status, 200, r.text);
  const lines = r.text.split('\n').filter((l) => l.trim());
  checkResults(lines.map((l) => JSON.parse(l)));
  const rows = await gw.waitUsage(1, { pred: (x) => x.upstream_request_id === batch.id });
  assert.equal(rows.length, 1, 'one row per model of the batch');
  const row = rows[0];
  assert.match(row.endpoint, /^\/v1\/messages\/batches/);
  assert.equal(row.model, MODEL);
  assert.equal(row.input_tokens, 22);
  assert.equal(row.output_tokens, 14);
  // Half of the list price ($1 / $5 per million tokens) for batch processing.
  assert.ok(Math.abs(row.cost_usd - ((22 * 1 + 14 * 5) / 1e6) * 0.5) < 1e-12, `cost ${row.cost_usd}`);
  // Reading the results a second time adds nothing.
  const again = await http(`${gw.url}/v1/messages/batches/${batch.id}/results`, {
    headers: { 'x-api-key': gw.key, 'anthropic-version': '2023-06-01' },
  });
  assert.equal(again.status, 200);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(gw.usageRows().filter((x) => x.upstream_request_id === batch.id).length, 1);
});

test('batches: another key cannot see the batch (404)', async () => {
  const batch = await client.messages.batches.create({ requests: batchRequests });
  const other = await gw.createKey({ name: 'e2e-other-batches' });
  const c = newClient({ apiKey: other.key });
  await assert.rejects(c.messages.batches.retrieve(batch.id), Anthropic.NotFoundError);
  const ids = [];
  for await (const b of c.messages.batches.list()) ids.push(b.id);
  assert.ok(!ids.includes(batch.id));
});

test('batches: a request for a model outside the allowlist is refused (403)', async () => {
  const k = await gw.createKey({ name: 'e2e-haiku-batches', models: ['claude-haiku-*'] });
  const c = newClient({ apiKey: k.key });
  await mock.reset();
  await assert.rejects(
    c.messages.batches.create({
      requests: [{ custom_id: 'x', params: { model: 'claude-opus-4-1', max_tokens: 5, messages: user('hi') } }],
    }),
    Anthropic.PermissionDeniedError,
  );
  assert.equal((await mock.apiRequests()).length, 0, 'nothing went upstream');
});

test('files (beta): upload, list, metadata, download, delete', async () => {
  const bytes = Buffer.concat([crypto.randomBytes(300 * 1024), Buffer.from([0, 0xff, 0x0d, 0x0a, 0x2d, 0x2d])]);
  const up = await client.beta.files.upload({ file: await toFile(bytes, 'e2e-data.bin', { type: 'application/octet-stream' }) });
  assert.equal(up.type, 'file');
  assert.equal(up.filename, 'e2e-data.bin');
  assert.equal(up.size_bytes, bytes.length);
  assert.equal(up.mime_type, 'application/octet-stream');

  const ids = [];
  for await (const f of client.beta.files.list({ limit: 10 })) ids.push(f.id);
  assert.ok(ids.includes(up.id), `${up.id} in ${ids}`);

  const meta = await client.beta.files.retrieveMetadata(up.id);
  assert.equal(meta.size_bytes, bytes.length);

  const resp = await client.beta.files.download(up.id);
  const got = Buffer.from(await resp.arrayBuffer());
  assert.equal(got.length, bytes.length);
  assert.ok(got.equals(bytes), 'downloaded bytes equal the uploaded ones');

  // Every Files call went upstream with the files beta, which gatehouse adds.
  const files = (await mock.apiRequests()).filter((r) => r.path.startsWith('/v1/files'));
  assert.ok(files.length >= 4);
  for (const r of files) assert.match(hdr(r, 'anthropic-beta') || '', /files-api-2025-04-14/);

  const del = await client.beta.files.delete(up.id);
  assert.equal(del.id, up.id);
  assert.equal(del.type, 'file_deleted');
  const after = [];
  for await (const f of client.beta.files.list()) after.push(f.id);
  assert.ok(!after.includes(up.id));
  await assert.rejects(client.beta.files.retrieveMetadata(up.id), Anthropic.NotFoundError);
});

test('files (beta): another key gets 404 for a file it does not own', async () => {
  const up = await client.beta.files.upload({ file: await toFile(Buffer.from('secret'), 'mine.txt', { type: 'text/plain' }) });
  const other = await gw.createKey({ name: 'e2e-other-files' });
  const c = newClient({ apiKey: other.key });
  await assert.rejects(c.beta.files.download(up.id), Anthropic.NotFoundError);
  await assert.rejects(c.beta.files.delete(up.id), Anthropic.NotFoundError);
  const ids = [];
  for await (const f of c.beta.files.list()) ids.push(f.id);
  assert.ok(!ids.includes(up.id));
  await client.beta.files.delete(up.id);
});

test('models.list: pages of 2 with after_id, and auto-pagination', async () => {
  const first = await client.models.list({ limit: 2 });
  assert.equal(first.data.length, 2);
  assert.equal(first.has_more, true);
  assert.equal(first.first_id, first.data[0].id);
  assert.equal(first.last_id, first.data[1].id);
  const pages = [];
  for await (const page of first.iterPages()) pages.push(page.data.map((m) => m.id));
  assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
  assert.deepEqual(pages.flat(), MOCK_MODELS);

  const all = [];
  for await (const m of client.models.list({ limit: 2 })) {
    assert.equal(m.type, 'model');
    assert.ok(m.display_name);
    all.push(m.id);
  }
  assert.deepEqual(all, MOCK_MODELS);

  const rows = await gw.waitUsage(1, { pred: (r) => r.endpoint === '/v1/models' });
  assert.equal(rows.at(-1).status, 200);
});

test('models.list: filtered by the key allowlist', async () => {
  const k = await gw.createKey({ name: 'e2e-haiku-models', models: ['claude-haiku-*'] });
  const ids = [];
  for await (const m of newClient({ apiKey: k.key }).models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['claude-haiku-4-5-20251001']);
});

test('auth styles: apiKey, authToken, x-api-key and "Authorization: Token" headers', async () => {
  const styles = {
    apiKey: { apiKey: gw.key },
    authToken: { apiKey: undefined, authToken: gw.key },
    'x-api-key header': { apiKey: null, defaultHeaders: { 'X-Api-Key': gw.key } },
    'Token header': { apiKey: null, defaultHeaders: { Authorization: `Token ${gw.key}` } },
  };
  const before = gw.usageRows().length;
  for (const [name, opts] of Object.entries(styles)) {
    const spy = spyFetch();
    const c = newClient({ ...opts, fetch: spy.fetch });
    const msg = await c.messages.create({ model: MODEL, max_tokens: 20, messages: user(`auth ${name}`) });
    assert.equal(msg.content[0].text, 'Hello from mock', name);
    const h = spy.calls[0].headers;
    const sent = h['x-api-key'] ? `x-api-key: ${h['x-api-key']}` : `authorization: ${h.authorization}`;
    assert.ok(sent.includes(gw.key), `${name}: ${sent}`);
    if (name === 'authToken') assert.equal(h.authorization, `Bearer ${gw.key}`);
    if (name === 'x-api-key header') assert.equal(h['x-api-key'], gw.key);
    if (name === 'Token header') assert.equal(h.authorization, `Token ${gw.key}`);
  }
  // Every style was attributed to the key.
  await gw.waitUsage(before + 4);
});

test('SDK apiKey option: which header this SDK version sends', async () => {
  // @anthropic-ai/sdk 0.x sent apiKey as x-api-key; this version sends Authorization: Bearer.
  // gatehouse must accept both, so only record what it is.
  const spy = spyFetch();
  await newClient({ fetch: spy.fetch }).messages.create({ model: MODEL, max_tokens: 5, messages: user('hi') });
  const h = spy.calls[0].headers;
  assert.ok(h['x-api-key'] === gw.key || h.authorization === `Bearer ${gw.key}`, JSON.stringify(h));
});

test('a refused key surfaces as AuthenticationError (401), nothing goes upstream', async () => {
  await mock.reset();
  const c = newClient({ apiKey: 'gh-vk-not-a-real-key' });
  const err = await c.messages.create({ model: MODEL, max_tokens: 5, messages: user('hi') }).then(
    () => assert.fail('expected a 401'),
    (e) => e,
  );
  assert.ok(err instanceof Anthropic.AuthenticationError, `${err}`);
  assert.equal(err.status, 401);
  assert.equal(err.error.type, 'error');
  assert.equal(err.error.error.type, 'authentication_error');
  assert.ok(err.headers.get('x-gatehouse-request-id'));
  assert.equal((await mock.apiRequests()).length, 0);
});

test('a revoked key is refused too', async () => {
  const k = await gw.createKey({ name: 'e2e-revoked' });
  const c = newClient({ apiKey: k.key });
  assert.equal((await c.messages.create({ model: MODEL, max_tokens: 5, messages: user('hi') })).content[0].text, 'Hello from mock');
  assert.equal((await gw.admin('DELETE', `/admin/keys/${k.id}`)).status < 300, true);
  await assert.rejects(c.messages.create({ model: MODEL, max_tokens: 5, messages: user('hi') }), Anthropic.AuthenticationError);
});

test('a model outside the allowlist surfaces as PermissionDeniedError (403)', async () => {
  const k = await gw.createKey({ name: 'e2e-haiku-only', models: ['claude-haiku-*'] });
  const c = newClient({ apiKey: k.key });
  assert.equal((await c.messages.create({ model: MODEL, max_tokens: 5, messages: user('hi') })).content[0].text, 'Hello from mock');
  await mock.reset();
  const err = await c.messages.create({ model: 'claude-opus-4-1', max_tokens: 5, messages: user('hi') }).then(
    () => assert.fail('expected a 403'),
    (e) => e,
  );
  assert.ok(err instanceof Anthropic.PermissionDeniedError, `${err}`);
  assert.equal(err.status, 403);
  assert.equal(err.error.error.type, 'permission_error');
  assert.match(err.error.error.message, /claude-opus-4-1/);
  assert.equal((await mock.apiRequests()).length, 0);
  // Streaming requests are refused the same way, before any event.
  await assert.rejects(
    c.messages.stream({ model: 'claude-opus-4-1', max_tokens: 5, messages: user('hi') }).finalMessage(),
    Anthropic.PermissionDeniedError,
  );
});

test('upstream errors are relayed with their status and body', async () => {
  const err = await client.messages
    .create({ model: MODEL, max_tokens: 5, messages: user('hi') }, { headers: { 'x-mock-scenario': '400' } })
    .then(() => assert.fail('expected a 400'), (e) => e);
  assert.ok(err instanceof Anthropic.BadRequestError, `${err}`);
  assert.equal(err.error.error.message, 'gh-mock: invalid request');
});

test('mid-stream upstream error event reaches the SDK', async () => {
  const mark = gw.usageMark();
  const stream = client.messages.stream(
    { model: MODEL, max_tokens: 50, messages: user('hi') },
    { headers: { 'x-mock-scenario': 'sse-error', 'x-mock-cut-after': '3' } },
  );
  const err = await stream.finalMessage().then(() => assert.fail('expected an error'), (e) => e);
  assert.match(String(err.message || err), /overloaded|Overloaded/);
  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => /overloaded/.test(r.error_type || '') });
  assert.equal(row.endpoint, '/v1/messages');
  assert.equal(row.stream, 1);
  assert.match(row.error_type, /overloaded/);
});
