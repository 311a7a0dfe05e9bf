// openai.test.mjs - the official `openai` npm client against `qforge serve`:
// list models, a chat, a streamed chat (same text as the non-streamed one
// under greedy decoding), legacy completions, response_format with a JSON
// schema (the answer must validate), and the error classes the client maps
// our statuses to.
import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './server.mjs';

let srv, client;

test.before(async () => {
  srv = await startServer(['--parallel', '4']);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 60000 });
});

test.after(async () => {
  const code = await srv.stop();
  assert.equal(code, 0, 'the server exits cleanly on SIGTERM');
});

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three colours.' },
];

test('lists models', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  assert.deepEqual(ids, ['tiny']);
  const one = await client.models.retrieve('tiny');
  assert.equal(one.id, 'tiny');
});

test('completes a chat', async () => {
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'tiny');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
  assert.ok(r.usage.prompt_tokens > 10, `prompt tokens ${r.usage.prompt_tokens}`);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 12);
});

test('n completions and max_completion_tokens', async () => {
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_completion_tokens: 5, n: 3, seed: 7 });
  assert.equal(r.choices.length, 3);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.ok(r.usage.completion_tokens >= 3 && r.usage.completion_tokens <= 15);
});

test('streams a chat (same text as without streaming, greedy)', async () => {
  const args = { model: 'tiny', messages, max_tokens: 24, temperature: 0 };
  const whole = await client.chat.completions.create(args);
  const stream = await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, chunks = 0, usage = null, role = null;
  for await (const ch of stream) {
    chunks++;
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      if (c.delta.role) role = c.delta.role;
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 3, `chunks ${chunks}`);
  assert.equal(role, 'assistant');
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(text, whole.choices[0].message.content);
  assert.ok(usage, 'usage chunk with stream_options.include_usage');
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
});

test('legacy completions, streamed and not', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 10, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  const s = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true });
  let text = '';
  for await (const ch of s) text += ch.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

test('response_format json_schema gives a schema-valid answer', async () => {
  const schema = {
    type: 'object',
    properties: {
      answer: { type: 'string', enum: ['yes', 'no', 'maybe'] },
      sure: { type: 'boolean' },
    },
    required: ['answer', 'sure'],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: 'tiny', messages: [{ role: 'user', content: 'Is the sky blue? Answer in JSON.' }],
      max_tokens: 200, seed, temperature: 1,
      response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema, strict: true } },
    });
    const content = r.choices[0].message.content;
    assert.equal(r.choices[0].finish_reason, 'stop', `finished: ${content}`);
    const obj = JSON.parse(content);
    assert.deepEqual(Object.keys(obj).sort(), ['answer', 'sure']);
    assert.ok(['yes', 'no', 'maybe'].includes(obj.answer), obj.answer);
    assert.equal(typeof obj.sure, 'boolean');
  }
});

test('errors map to the client error classes', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && /no-such-model/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages, max_tokens: 0 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens');
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && /messages/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages, temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  // the server is still fine
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 });
  assert.equal(r.choices.length, 1);
});
