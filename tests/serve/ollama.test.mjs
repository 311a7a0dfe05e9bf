// ollama.test.mjs - the official `ollama` npm client against `qforge serve`:
// tags, chat without and with streaming (same text under greedy decoding),
// generate with context, format as a JSON schema, ps, show, version, and
// the error for an unknown model.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import { startServer } from './server.mjs';

let srv, ollama;

test.before(async () => {
  srv = await startServer(['--keep-alive', '10m']);
  ollama = new Ollama({ host: srv.url });
});

test.after(async () => {
  assert.equal(await srv.stop(), 0);
});

const messages = [{ role: 'user', content: 'Why is the sky blue?' }];

test('lists tags', async () => {
  const r = await ollama.list();
  assert.equal(r.models.length, 1);
  const m = r.models[0];
  assert.equal(m.name, 'tiny');
  assert.equal(m.model, 'tiny');
  assert.ok(m.size > 1000);
  assert.equal(m.details.format, 'gguf');
  assert.equal(m.details.family, 'llama');
  assert.equal(m.details.quantization_level, 'Q8_0');
  assert.ok(!Number.isNaN(Date.parse(m.modified_at)));
});

test('chats without streaming', async () => {
  const r = await ollama.chat({ model: 'tiny', messages, stream: false, options: { num_predict: 8, temperature: 0 } });
  assert.equal(r.done, true);
  assert.equal(r.model, 'tiny');
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.done_reason));
  assert.ok(r.eval_count >= 1 && r.eval_count <= 8);
  assert.ok(r.prompt_eval_count > 5);
  assert.ok(r.total_duration > 0);
});

test('chats with streaming (same text, greedy)', async () => {
  const opts = { num_predict: 16, temperature: 0 };
  const whole = await ollama.chat({ model: 'tiny:latest', messages, stream: false, options: opts });
  const stream = await ollama.chat({ model: 'tiny', messages, stream: true, options: opts });
  let text = '', parts = 0, last = null;
  for await (const p of stream) {
    parts++;
    text += p.message.content;
    last = p;
  }
  assert.ok(parts >= 2);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, whole.done_reason);
  assert.equal(last.eval_count, whole.eval_count);
  assert.equal(text, whole.message.content);
});

test('generates, and continues from context', async () => {
  const r = await ollama.generate({ model: 'tiny', prompt: 'Hello', stream: false, options: { num_predict: 4, temperature: 0 } });
  assert.equal(r.done, true);
  assert.ok(Array.isArray(r.context) && r.context.length === r.prompt_eval_count + r.eval_count);
  const r2 = await ollama.generate({ model: 'tiny', prompt: 'More', context: r.context, stream: false, options: { num_predict: 4 } });
  assert.ok(r2.prompt_eval_count > r.context.length);
  const s = await ollama.generate({ model: 'tiny', prompt: 'Hello', stream: true, options: { num_predict: 4, temperature: 0 } });
  let text = '';
  for await (const p of s) text += p.response;
  assert.equal(text, r.response);
});

test('format with a JSON schema', async () => {
  const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
  const r = await ollama.chat({ model: 'tiny', messages, format: schema, stream: false, options: { num_predict: 100, seed: 5 } });
  assert.equal(r.done_reason, 'stop');
  assert.equal(typeof JSON.parse(r.message.content).ok, 'boolean');
});

test('ps, show, version', async () => {
  const ps = await ollama.ps();
  assert.equal(ps.models.length, 1);
  assert.equal(ps.models[0].name, 'tiny');
  const left = Date.parse(ps.models[0].expires_at) - Date.now();
  assert.ok(left > 8 * 60e3 && left <= 10 * 60e3 + 5e3, `expires in ${left} ms (keep-alive 10m)`);
  const show = await ollama.show({ model: 'tiny' });
  assert.equal(show.details.family, 'llama');
  assert.equal(show.model_info['general.architecture'], 'llama');
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
});

test('unknown model is an error with status 404', async () => {
  await assert.rejects(ollama.chat({ model: 'nope', messages, stream: false }),
    (e) => e.status_code === 404 && /nope/.test(e.error ?? e.message));
  await assert.rejects(ollama.chat({ model: 'nope', messages, stream: true }).then(async (s) => { for await (const _ of s); }),
    (e) => e.status_code === 404);
});
