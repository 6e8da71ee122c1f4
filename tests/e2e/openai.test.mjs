// openai.test.mjs: the official `openai` package against gatehouse in front of gh-mock, which
// speaks only Anthropic's Messages API: baseURL = gatehouse + "/v1", apiKey = a virtual key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startStack, hdr } from './lib.mjs';

for (const k of ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'OPENAI_ORG_ID', 'OPENAI_PROJECT_ID', 'ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL']) {
  delete process.env[k];
}

const MODEL = 'claude-sonnet-4-5';
const MOCK_MODELS = [
  'claude-sonnet-4-5-20250929',
  'claude-haiku-4-5-20251001',
  'claude-opus-4-1-20250805',
  'claude-sonnet-4-20250514',
  'claude-opus-4-20250514',
];

let stack, gw, mock, client;

function newClient(opts = {}) {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.key, maxRetries: 0, timeout: 30000, ...opts });
}

/** The only upstream request since the last reset, its body parsed. */
async function onlyUpstream() {
  const reqs = await mock.apiRequests();
  assert.equal(reqs.length, 1, `upstream requests: ${reqs.map((r) => r.path)}`);
  return { ...reqs[0], json: JSON.parse(reqs[0].body) };
}

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

before(async () => {
  stack = await startStack();
  ({ gw, mock } = stack);
  client = newClient();
});

after(async () => {
  await stack?.stop();
});

test('chat.completions: plain answer translated from the Messages API', async () => {
  await mock.reset();
  const mark = gw.usageMark();
  const r = await client.chat.completions.create({
    model: MODEL,
    max_tokens: 100,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Say hello' },
    ],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'Hello from mock');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.prompt_tokens, 11);
  assert.equal(r.usage.completion_tokens, 7);
  assert.equal(r.usage.total_tokens, 18);

  const up = await onlyUpstream();
  assert.equal(up.path, '/v1/messages');
  assert.equal(hdr(up, 'x-api-key'), 'sk-ant-e2e-provider-secret-0001');
  assert.equal(up.json.model, MODEL);
  assert.equal(up.json.max_tokens, 100);
  assert.equal(up.json.system, 'Be brief.');
  assert.equal(up.json.messages.length, 1);
  assert.equal(up.json.messages[0].role, 'user');

  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/chat/completions' && r.stream === 0 });
  assert.equal(row.endpoint, '/v1/chat/completions');
  assert.equal(row.model, MODEL);
  assert.equal(row.status, 200);
  assert.equal(row.input_tokens, 11);
  assert.equal(row.output_tokens, 7);
});

test('chat.completions: streaming chunks, finish_reason and usage chunk', async () => {
  const mark = gw.usageMark();
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Count' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  const withChoice = chunks.filter((c) => c.choices.length > 0);
  assert.equal(withChoice[0].choices[0].delta.role, 'assistant');
  const text = withChoice.map((c) => c.choices[0].delta.content || '').join('');
  assert.equal(text, 'w0 w1 w2 ');
  assert.equal(withChoice.at(-1).choices[0].finish_reason, 'stop');
  const usage = chunks.at(-1).usage;
  assert.ok(usage, 'a final usage chunk');
  assert.equal(usage.prompt_tokens, 11);
  assert.equal(usage.completion_tokens, 7);
  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/chat/completions' && r.stream === 1 });
  assert.equal(row.endpoint, '/v1/chat/completions');
  assert.equal(row.stream, 1);
  assert.equal(row.output_tokens, 7);
});

test('chat.completions: the SDK stream helper assembles the same text', async () => {
  const runner = client.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Count' }] });
  const deltas = [];
  runner.on('content', (d) => deltas.push(d));
  const final = await runner.finalChatCompletion();
  assert.equal(deltas.join(''), 'w0 w1 w2 ');
  assert.equal(final.choices[0].message.content, 'w0 w1 w2 ');
  assert.equal(final.choices[0].finish_reason, 'stop');
});

test('chat.completions: tool-call round trip', async () => {
  await mock.reset();
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const first = await client.chat.completions.create(
    { model: MODEL, messages, tools: [weatherTool], tool_choice: 'auto' },
    { headers: { 'x-mock-scenario': 'tool' } },
  );
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.id, 'toolu_mock_1');
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { location: 'Paris' });
  // Upstream saw Anthropic's tool definitions.
  const up1 = await onlyUpstream();
  assert.deepEqual(up1.json.tools, [
    { name: 'get_weather', description: 'Current weather of a city', input_schema: weatherTool.function.parameters },
  ]);
  assert.deepEqual(up1.json.tool_choice, { type: 'auto' });

  await mock.reset();
  messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '18°C and sunny' });
  const second = await client.chat.completions.create({ model: MODEL, messages, tools: [weatherTool] });
  assert.equal(second.choices[0].message.content, 'Hello from mock');
  assert.equal(second.choices[0].finish_reason, 'stop');

  const up2 = await onlyUpstream();
  const [u, a, t] = up2.json.messages;
  assert.equal(u.role, 'user');
  assert.equal(a.role, 'assistant');
  const use = a.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(use, { type: 'tool_use', id: 'toolu_mock_1', name: 'get_weather', input: { location: 'Paris' } });
  assert.equal(t.role, 'user');
  assert.equal(t.content[0].type, 'tool_result');
  assert.equal(t.content[0].tool_use_id, 'toolu_mock_1');
  assert.match(JSON.stringify(t.content[0].content), /18°C and sunny/);
});

test('chat.completions: streamed tool call arrives as tool_calls deltas', async () => {
  const stream = await client.chat.completions.create(
    { model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weatherTool], stream: true },
    { headers: { 'x-mock-scenario': 'tool' } },
  );
  let text = '';
  const calls = {};
  let finish;
  for await (const c of stream) {
    const ch = c.choices[0];
    if (!ch) continue;
    text += ch.delta.content || '';
    for (const tc of ch.delta.tool_calls || []) {
      const slot = (calls[tc.index] ||= { id: '', name: '', args: '' });
      if (tc.id) slot.id = tc.id;
      if (tc.function?.name) slot.name = tc.function.name;
      slot.args += tc.function?.arguments || '';
    }
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(text, 'Let me check');
  assert.deepEqual(Object.keys(calls), ['0']);
  assert.equal(calls[0].id, 'toolu_mock_1');
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].args), { location: 'Paris' });
  assert.equal(finish, 'tool_calls');
});

test('chat.completions: structured output becomes Anthropic output_format upstream', async () => {
  await mock.reset();
  const schema = {
    type: 'object',
    properties: { title: { type: 'string' }, day: { type: 'string' } },
    required: ['title', 'day'],
    additionalProperties: false,
  };
  const r = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Extract: Alice meets Bob on Friday.' }],
    response_format: { type: 'json_schema', json_schema: { name: 'event', strict: true, schema } },
  });
  assert.equal(r.choices[0].message.content, 'Hello from mock');
  const up = await onlyUpstream();
  assert.deepEqual(up.json.output_format, { type: 'json_schema', schema });
  assert.equal(up.json.response_format, undefined, 'no OpenAI field leaks upstream');
  // gatehouse adds the beta that output_format needs.
  assert.match(hdr(up, 'anthropic-beta') || '', /structured-outputs-2025-11-13/);
});

test('responses: plain call', async () => {
  await mock.reset();
  const mark = gw.usageMark();
  const r = await client.responses.create({
    model: MODEL,
    instructions: 'Be brief.',
    input: 'Say hello',
    max_output_tokens: 64,
  });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, 'Hello from mock');
  const msg = r.output.find((o) => o.type === 'message');
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.content[0].type, 'output_text');
  assert.equal(r.usage.input_tokens, 11);
  assert.equal(r.usage.output_tokens, 7);
  const up = await onlyUpstream();
  assert.equal(up.path, '/v1/messages');
  assert.equal(up.json.system, 'Be brief.');
  assert.equal(up.json.max_tokens, 64);
  const [row] = await gw.waitUsage(1, { since: mark, pred: (r) => r.endpoint === '/v1/responses' && r.stream === 0 });
  assert.equal(row.endpoint, '/v1/responses');
  assert.equal(row.status, 200);
  assert.equal(row.output_tokens, 7);
});

test('responses: streaming event sequence', async () => {
  const stream = await client.responses.create({ model: MODEL, input: 'Count', stream: true });
  const types = [];
  let text = '';
  let completed;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.equal(types[0], 'response.created');
  assert.ok(types.includes('response.output_item.added'), types.join());
  assert.ok(types.includes('response.output_text.done'), types.join());
  assert.equal(types.at(-1), 'response.completed');
  assert.equal(text, 'w0 w1 w2 ');
  assert.equal(completed.status, 'completed');
  assert.equal(completed.output_text ?? completed.output[0].content[0].text, 'w0 w1 w2 ');
  assert.equal(completed.usage.output_tokens, 7);
});

test('responses: the SDK stream helper gives the final response', async () => {
  const stream = client.responses.stream({ model: MODEL, input: 'Count' });
  const deltas = [];
  stream.on('response.output_text.delta', (ev) => deltas.push(ev.delta));
  const final = await stream.finalResponse();
  assert.equal(deltas.join(''), 'w0 w1 w2 ');
  assert.equal(final.output_text, 'w0 w1 w2 ');
});

test('responses: function call then function_call_output', async () => {
  const tools = [{ type: 'function', name: 'get_weather', parameters: weatherTool.function.parameters, strict: false }];
  const first = await client.responses.create(
    { model: MODEL, input: 'Weather in Paris?', tools },
    { headers: { 'x-mock-scenario': 'tool' } },
  );
  const fc = first.output.find((o) => o.type === 'function_call');
  assert.ok(fc, JSON.stringify(first.output));
  assert.equal(fc.name, 'get_weather');
  assert.equal(fc.call_id, 'toolu_mock_1');
  assert.deepEqual(JSON.parse(fc.arguments), { location: 'Paris' });
  await mock.reset();
  const second = await client.responses.create({
    model: MODEL,
    tools,
    input: [
      { role: 'user', content: 'Weather in Paris?' },
      fc,
      { type: 'function_call_output', call_id: fc.call_id, output: '18°C' },
    ],
  });
  assert.equal(second.output_text, 'Hello from mock');
  const up = await onlyUpstream();
  const blocks = up.json.messages.flatMap((m) => (Array.isArray(m.content) ? m.content : []));
  assert.ok(blocks.some((b) => b.type === 'tool_use' && b.id === 'toolu_mock_1'));
  assert.ok(blocks.some((b) => b.type === 'tool_result' && b.tool_use_id === 'toolu_mock_1'));
});

test('models.list: the OpenAI SDK parses GET /v1/models', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.ok(m.owned_by);
    ids.push(m.id);
  }
  assert.deepEqual(ids, MOCK_MODELS);
});

test('models.list: the Anthropic SDK parses the same endpoint', async () => {
  const a = new Anthropic({ baseURL: gw.url, apiKey: gw.key, maxRetries: 0 });
  const ids = [];
  for await (const m of a.models.list()) {
    assert.equal(m.type, 'model');
    ids.push(m.id);
  }
  assert.deepEqual(ids, MOCK_MODELS);
});

test('n=2 is refused with a 400 BadRequestError in OpenAI shape, nothing goes upstream', async () => {
  await mock.reset();
  const err = await client.chat.completions
    .create({ model: MODEL, n: 2, messages: [{ role: 'user', content: 'hi' }] })
    .then(() => assert.fail('expected a 400'), (e) => e);
  assert.ok(err instanceof OpenAI.BadRequestError, `${err}`);
  assert.equal(err.status, 400);
  assert.equal(err.type, 'invalid_request_error');
  assert.match(err.message, /\bn\b/);
  assert.equal((await mock.apiRequests()).length, 0);
});

test('a refused key is an AuthenticationError (401) in OpenAI shape', async () => {
  const c = newClient({ apiKey: 'gh-vk-nope' });
  const err = await c.chat.completions
    .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
    .then(() => assert.fail('expected a 401'), (e) => e);
  assert.ok(err instanceof OpenAI.AuthenticationError, `${err}`);
  assert.equal(err.status, 401);
  assert.ok(err.error && typeof err.error.message === 'string', JSON.stringify(err.error));
});

test('a model outside the allowlist is a PermissionDeniedError (403)', async () => {
  const k = await gw.createKey({ name: 'e2e-oai-haiku', models: ['claude-haiku-*'] });
  const c = newClient({ apiKey: k.key });
  await assert.rejects(
    c.chat.completions.create({ model: 'claude-opus-4-1', messages: [{ role: 'user', content: 'hi' }] }),
    OpenAI.PermissionDeniedError,
  );
  const ids = [];
  for await (const m of c.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['claude-haiku-4-5-20251001']);
});

test('upstream Anthropic errors are converted (429 → RateLimitError)', async () => {
  const err = await client.chat.completions
    .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-mock-scenario': '429' } })
    .then(() => assert.fail('expected an error'), (e) => e);
  assert.ok(err instanceof OpenAI.RateLimitError, `${err}`);
  assert.equal(err.status, 429);
});

test('embeddings: a clear unsupported-operation error, not a bare 404', async () => {
  const err = await client.embeddings
    .create({ model: MODEL, input: 'hello' })
    .then(() => assert.fail('expected an error'), (e) => e);
  assert.ok(err instanceof OpenAI.APIError, `${err}`);
  assert.notEqual(err.status, 404);
  assert.match(err.message, /embeddings/i);
});
