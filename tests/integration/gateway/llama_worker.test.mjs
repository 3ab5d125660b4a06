// A Llama-architecture checkpoint through the real gateway: r1-mkmodel's tiny-llama (llama3
// RoPE, no q/k/v bias, an explicit head_dim) with the DeepSeek-R1-Distill-Llama tokenizer made
// from the npm Llama 3.1 tokenizer, served by a real r1-worker on the CPU. The chat template is
// the distill's (read from its tokenizer_config.json), its markers DeepSeek's tokens in Llama
// 3.1's special ids; the text the gateway streams is what the model generates without a server.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeRequire, postJson, sseEvents, curl, startProcess, startGateway, stop, waitReady } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-llama-'));
const model = path.join(tmp, 'model');
const started = [];
const question = 'What is 2+2? 二加二';

// r1-tokenize on one string: its ids under the checkpoint's tokenizer.
function tokenize(text) {
  const out = execFileSync(process.env.R1_TOKENIZE, ['--tokenizer', model], { input: JSON.stringify(text) + '\n' });
  return JSON.parse(out.toString());
}

test.before(() => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny-llama', '--out', model, '--tokenizer',
    path.join(process.env.R1_SOURCE_DIR, '.cache/tokenizer/llama3_1/tokenizer.json')], { stdio: 'ignore' });
});
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); fs.rmSync(tmp, { recursive: true }); });

test('a Llama checkpoint serves chat through the gateway with the distill template', async () => {
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json')));
  assert.equal(config.architectures[0], 'LlamaForCausalLM');
  assert.equal(config.rope_scaling.rope_type, 'llama3');
  // The distill's markers are single tokens in Llama 3.1's special ids (DeepSeek's tokenizer).
  assert.deepEqual(tokenize('<｜begin▁of▁sentence｜><｜User｜><｜Assistant｜><think></think><｜end▁of▁sentence｜>'),
    [128000, 128011, 128012, 128013, 128014, 128001]);

  const w = await startProcess(process.env.R1_WORKER,
    ['--model', model, '--listen', '127.0.0.1:0', '--kv-cache-memory', String(32 << 20),
     '--drain-timeout', '1', '--log-level', 'warning'], /serving .* on [^\s]*:(\d+)/);
  started.push(w);
  const g = await startGateway([w]);
  started.push(g);
  await waitReady(g, 1);
  const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
  assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['model']);

  const messages = [{ role: 'user', content: question }];
  const plain = await client.chat.completions.create({ model: 'model', messages, max_tokens: 12, temperature: 0 });
  assert.equal(plain.choices[0].finish_reason, 'length');
  assert.equal(plain.usage.completion_tokens, 12);
  // The prompt is the distill template's rendering: BOS, <｜User｜>, the question, <｜Assistant｜>,
  // <think>, "\n" (the generation prompt that opens the reasoning).
  const rendered = tokenize(`<｜begin▁of▁sentence｜><｜User｜>${question}<｜Assistant｜><think>\n`);
  assert.deepEqual(rendered.slice(0, 2), [128000, 128011]);
  assert.equal(plain.usage.prompt_tokens, rendered.length);
  const whole = (plain.choices[0].message.reasoning_content ?? '') + (plain.choices[0].message.content ?? '');
  assert.ok(whole.length > 0);

  // The same greedy text as the model gives without a server (r1-generate --chat), and as the
  // stream's deltas add up to.
  const direct = execFileSync(process.env.R1_GENERATE, ['--model', model, '--prompt', question, '--chat',
    '--max-tokens', '12', '--temperature', '0', '--ignore-eos', '--output', 'text'], { stdio: ['ignore', 'pipe', 'ignore'] });
  assert.equal(whole, direct.toString().replace(/\n$/, ''));
  const stream = await client.chat.completions.create({ model: 'model', messages, max_tokens: 12, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) {
    for (const c of chunk.choices) text += (c.delta.reasoning_content ?? '') + (c.delta.content ?? '');
  }
  assert.equal(text, whole);

  // Token-id prompts in Llama ids, and SSE framing with curl.
  const ids = await client.completions.create({ model: 'model', prompt: rendered, max_tokens: 4, temperature: 0 });
  assert.equal(ids.usage.prompt_tokens, rendered.length);
  assert.equal(ids.usage.completion_tokens, 4);
  const r = await curl(['-N', '-H', 'content-type: application/json', '-d',
    JSON.stringify({ model: 'model', messages, max_tokens: 5, stream: true }), `${g.url}/v1/chat/completions`]);
  const events = sseEvents(r.stdout);
  assert.equal(events.at(-1), '[DONE]');
  assert.equal(JSON.parse(events.at(-2)).choices[0].finish_reason, 'length');
  // Ids past the Llama vocabulary are the worker's 400.
  const bad = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: [128256], max_tokens: 2 });
  assert.equal(bad.status, 400, bad.text);
});
