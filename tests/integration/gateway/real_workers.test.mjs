// The gateway in front of real r1-worker processes serving the tiny random-weight model:
// the OpenAI SDK and curl end to end, kill -9 of a worker under load, and a worker whose
// --memory-limit is below its resident memory (pressure) until it restarts with a normal one.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { getLoad, nodeRequire, processes, readStream, startGateway, waitReady, postJson, sseEvents, curl, sleep, stop, metric, waitFor } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-real-'));
const model = path.join(tmp, 'model');
const { started, worker: realWorker, gateway } = processes(model);

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
test.before(() => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--out', model, '--tokenizer',
    path.join(process.env.R1_SOURCE_DIR, '.cache/tokenizer/tokenizer.json')], { stdio: 'ignore' });
});
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); fs.rmSync(tmp, { recursive: true }); });

test('OpenAI SDK and curl against two real workers', async () => {
  const w1 = await realWorker();
  const w2 = await realWorker();
  const g = await gateway([w1, w2]);
  const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['model']);

  const messages = [{ role: 'user', content: 'What is 2+2?' }];
  const plain = await client.chat.completions.create({ model: 'model', messages, max_tokens: 12, temperature: 0 });
  assert.equal(plain.choices[0].finish_reason, 'length');
  assert.equal(plain.usage.completion_tokens, 12);
  assert.ok(plain.usage.prompt_tokens > 5);
  const whole = (plain.choices[0].message.reasoning_content ?? '') + (plain.choices[0].message.content ?? '');
  assert.ok(whole.length > 0);
  // Greedy decoding: the streamed deltas add up to the same text, on whichever worker.
  const stream = await client.chat.completions.create({ model: 'model', messages, max_tokens: 12, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += (c.delta.reasoning_content ?? '') + (c.delta.content ?? '');
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, whole);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);

  const comp = await client.completions.create({ model: 'model', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(comp.usage.completion_tokens, 8);
  const cstream = await client.completions.create({ model: 'model', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
  let ctext = '';
  for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? '';
  assert.equal(ctext, comp.choices[0].text);
  // Token-id prompts, logprobs, seeds.
  const ids = await client.completions.create({ model: 'model', prompt: [1, 2, 3, 4], max_tokens: 3, logprobs: 2, seed: 5, temperature: 0.8 });
  assert.equal(ids.choices[0].logprobs.tokens.length, 3);
  assert.equal(Object.keys(ids.choices[0].logprobs.top_logprobs[0]).length > 0, true);

  // SSE framing with curl.
  const r = await curl(['-i', '-N', '-H', 'content-type: application/json', '-d',
    JSON.stringify({ model: 'model', messages, max_tokens: 5, stream: true }), `${g.url}/v1/chat/completions`]);
  const [head, payload] = r.stdout.split('\r\n\r\n');
  assert.match(head, /content-type: text\/event-stream/i);
  const events = sseEvents(payload);
  assert.equal(events.at(-1), '[DONE]');
  assert.equal(JSON.parse(events.at(-2)).choices[0].finish_reason, 'length');
  // The worker's own validation comes back as a 400 in OpenAI's shape.
  const bad = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: [999999999], max_tokens: 2 });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.error.type, 'invalid_request_error');

  // A client that goes away cancels the worker's sequence at once.
  const running = async () => (await getLoad(w1.port)).running + (await getLoad(w2.port)).running;
  const ctrl = new AbortController();
  const r2 = await fetch(`${g.url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: ctrl.signal,
    body: JSON.stringify({ model: 'model', prompt: 'Go on', max_tokens: 20000, ignore_eos: true, stream: true }) });
  await r2.body.getReader().read();
  assert.equal(await running(), 1);
  ctrl.abort();
  await waitFor(async () => (await running()) === 0, 'the worker to drop the sequence', 3000);
});

test('kill -9 of a real worker under load: requests without a token yet still succeed', async () => {
  // Two running per worker, the rest wait in the worker's queue without a token.
  const ws = [];
  for (let i = 0; i < 3; i++) ws.push(await realWorker(['--max-running', '2']));
  const g = await gateway(ws, ['--breaker-cooldown-ms', '60000']);
  let killedAt = Infinity;
  const one = () => readStream(`${g.url}/v1/completions`,
    { model: 'model', prompt: 'Tell me a story', max_tokens: 300, ignore_eos: true, stream: true }, 'length');
  const all = [];
  for (let i = 0; i < 12; i++) all.push(one());
  // Kill while the first two on each worker still run (300 tokens) and the others wait.
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 12, '12 streams');
  await sleep(50);
  killedAt = Date.now();
  await stop(ws[0], 'SIGKILL');
  const results = await Promise.all(all);
  let tokenless = 0, failed = 0;
  for (const r of results) {
    if (!r.ok) failed++;
    if (r.firstAt > killedAt + 20) {
      tokenless++;
      assert.ok(r.ok, `a request without a token at the kill failed: ${r.text.slice(-300)}`);
    }
  }
  assert.ok(tokenless >= 1, 'no request was waiting at the kill');
  assert.ok(failed <= 2, `${failed} failed: only the killed worker's running streams may`);
  // The killed worker's waiting requests went to the others.
  assert.ok(await metric(g, 'r1_gateway_retries_total', 'reason="unavailable"') >= 1);
  for (let i = 0; i < 4; i++) {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 200);
  }
});

test('a real worker over its --memory-limit: breaker opens, traffic moves away, returns after', async () => {
  const port = await freePort();
  let a = await realWorker(['--memory-limit', String(64 << 20)], port);  // resident memory is larger
  const b = await realWorker();
  const g = await startGateway([a, b], ['--breaker-cooldown-ms', '300']);
  started.push(g);
  await waitReady(g, 2);
  const la = `worker="127.0.0.1:${port}"`;
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state', la)) === 2, 'breaker open');
  for (let i = 0; i < 8; i++) {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 200);
  }
  assert.equal(await metric(g, 'r1_gateway_upstream_attempts_total', la), 0);
  // The pressure ends: the worker comes back on the same address with its normal limit.
  await stop(a, 'SIGKILL');
  a = await realWorker([], port);
  await waitFor(async () => {
    await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'x', max_tokens: 2 });
    return (await metric(g, 'r1_gateway_upstream_attempts_total', la)) > 0;
  }, 'traffic back on the worker', 20000);
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state', la)) === 0, 'breaker closed');
});
