// Retries, mid-stream failures, kill -9 of a worker under load, a worker that hangs before its
// first token, circuit breaking on memory pressure and on failures, and cancellation of a
// client that goes away; fake workers.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeRequire, readStream, startFakeWorker, startGateway, waitReady, postJson, sseEvents, sleep, stop, metric, waitFor, getLoad } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-'));
const started = [];
async function worker(args) { const w = await startFakeWorker(args); started.push(w); return w; }
async function gateway(ws, args) { const g = await startGateway(ws, args); started.push(g); await waitReady(g, ws.length); return g; }
test.after(async () => { for (const p of started.reverse()) await stop(p); fs.rmSync(tmp, { recursive: true }); });

const chat = (content, extra = {}) => ({ model: 'm', messages: [{ role: 'user', content }], ...extra });

test('failures before the first token are retried on another worker', async () => {
  const bad = await worker(['--name', 'bad', '--fail-before-first', '14']);  // UNAVAILABLE
  const good = await worker(['--name', 'good']);
  const g = await gateway([bad, good], ['--breaker-failures', '1000']);
  for (let i = 0; i < 12; i++) {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, 'good-0 good-1 ');
  }
  assert.ok(await metric(g, 'r1_gateway_retries_total', 'reason="unavailable"') >= 1);
  // Not retryable: the worker's INVALID_ARGUMENT comes back as 400.
  const inv = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@fail_before=3' });
  assert.equal(inv.status, 400);
  // RESOURCE_EXHAUSTED everywhere: max attempts, then 429.
  const busy = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@fail_before=8' });
  assert.equal(busy.status, 429);
  assert.equal(busy.json.error.code, 'resource_exhausted');
});

test('a failure after the first token resumes the stream; past --max-resumes it ends with an error event', async () => {
  const w = await worker(['--name', 'a']);
  const g = await gateway([w], ['--max-resumes', '2']);
  const text = (events) => events.map((e) => JSON.parse(e).choices?.[0]?.delta?.reasoning_content ?? '').join('');
  // The worker fails the stream after 3 tokens once: resumed (here on the same worker, the
  // only one), the client sees every token once and no error.
  const ok = await postJson(`${g.url}/v1/chat/completions`, chat('@fail_after=3 @tokens=6', { stream: true }));
  assert.equal(ok.status, 200);
  const okEvents = sseEvents(ok.text);
  assert.equal(text(okEvents.slice(0, -1)), 'a-0 a-1 a-2 a-3 a-4 a-5 ');
  assert.ok(!ok.text.includes('error'), ok.text);
  assert.equal(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="internal"'), 1);
  // Failing every time (@refault): two resumes, then the error event.
  const r = await postJson(`${g.url}/v1/chat/completions`, chat('@fail_after=3 @tokens=10 @refault', { stream: true }));
  assert.equal(r.status, 200);
  const events = sseEvents(r.text);
  assert.equal(events.at(-1), '[DONE]');
  const err = JSON.parse(events.at(-2));
  assert.match(err.error.message, /scripted failure mid-stream/);
  const finish = JSON.parse(events.at(-3));
  assert.equal(finish.choices[0].finish_reason, 'error');
  assert.equal(text(events.slice(0, -3)), 'a-0 a-1 a-2 a-3 a-4 a-5 a-6 a-7 a-8 ');
  assert.equal(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="limit_reached"'), 1);
  // The SDK surfaces it as an error while iterating.
  const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const stream = await client.chat.completions.create(chat('@abort_after=2 @tokens=50 @refault', { stream: true }));
  await assert.rejects((async () => { for await (const _ of stream) {} })(), /mid-stream/);
  // Without streaming nothing reached the client yet: a worker aborting is resumed too.
  const w2 = await worker(['--name', 'b']);
  const g2 = await gateway([w, w2]);
  const r2 = await postJson(`${g2.url}/v1/chat/completions`, chat('@tokens=6 @abort_after=2'));
  assert.equal(r2.status, 200);
  assert.match(r2.json.choices[0].message.reasoning_content, /^([ab])-0 \1-1 (?!\1)[ab]-2 [ab]-3 [ab]-4 [ab]-5 $/);
});

test('kill -9 of a worker mid-load: every request that had no token yet succeeds', async () => {
  const a = await worker(['--name', 'a']);
  const b = await worker(['--name', 'b']);
  const c = await worker(['--name', 'c']);
  const g = await gateway([a, b, c], ['--breaker-cooldown-ms', '60000']);
  let killedAt = Infinity;
  // Half of the requests wait before their first token, so some are tokenless at the kill.
  const one = (i) => readStream(`${g.url}/v1/chat/completions`,
    chat(`@tokens=15 @interval=40 ${i % 2 ? '@first_delay=700' : ''}`, { stream: true }), 'stop');
  const all = [];
  for (let i = 0; i < 18; i++) all.push(one(i));
  await sleep(300);
  killedAt = Date.now();
  await stop(a, 'SIGKILL');
  const results = await Promise.all(all);
  let tokenless = 0;
  for (const r of results) {
    if (r.firstAt > killedAt + 50) {  // had not received a token when the worker died
      tokenless++;
      assert.ok(r.ok, `request without a token at the kill failed: ${r.text.slice(-300)}`);
    }
  }
  assert.ok(tokenless >= 6, `only ${tokenless} requests were tokenless at the kill`);
  // New requests keep succeeding.
  for (let i = 0; i < 6; i++) assert.equal((await postJson(`${g.url}/v1/chat/completions`, chat('x'))).status, 200);
});

test('a worker that never sends a token is abandoned at --first-token-timeout; another serves', async () => {
  const hung = await worker(['--name', 'hung', '--hang']);
  const good = await worker(['--name', 'good']);
  const g = await gateway([hung, good],
    ['--first-token-timeout', '1', '--breaker-failures', '1', '--breaker-cooldown-ms', '60000']);
  // Sent together, with the good worker's streams lasting 3 s: least connections puts about
  // half of them on the hung worker while the first second runs.
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: 4 }, () => readStream(
    `${g.url}/v1/chat/completions`, chat('@tokens=3 @interval=1500', { stream: true }), 'stop')));
  const waits = results.map((r) => r.firstAt - t0);
  for (const r of results) {
    assert.ok(r.ok, r.text.slice(-300));
    assert.match(r.text, /good-0/);
  }
  // Those that met the hung worker got their first token about one timeout later, not after
  // the 600 s request deadline.
  assert.ok(waits.some((w) => w >= 950), `no request met the hung worker: ${waits}`);
  assert.ok(waits.every((w) => w < 4000), `first tokens took ${waits} ms`);
  assert.ok(await metric(g, 'r1_gateway_retries_total', 'reason="deadline_exceeded"') >= 1);
  // Counted against the hung worker (one failure opens its breaker here), and its calls were
  // cancelled rather than left running.
  assert.equal(await metric(g, 'r1_gateway_breaker_state', `worker="127.0.0.1:${hung.port}"`), 2);
  await waitFor(async () => (await getLoad(hung.port)).running === 0, 'the hung calls to be cancelled', 3000);
});

test('memory pressure opens the breaker, traffic moves away and comes back', async () => {
  const pressure = path.join(tmp, 'pressure-a');
  const a = await worker(['--name', 'a', '--pressure-file', pressure]);
  const b = await worker(['--name', 'b']);
  const g = await gateway([a, b], ['--breaker-cooldown-ms', '300']);
  const servedBy = async () => (await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: 'x', max_tokens: 1 })).json.choices[0].text[0];
  const before = new Set();
  for (let i = 0; i < 20; i++) before.add(await servedBy());
  assert.deepEqual([...before].sort(), ['a', 'b']);
  fs.writeFileSync(pressure, '');
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state', `worker="127.0.0.1:${a.port}"`)) === 2, 'breaker open');
  for (let i = 0; i < 20; i++) assert.equal(await servedBy(), 'b');
  fs.rmSync(pressure);
  await waitFor(async () => (await servedBy()) === 'a', 'traffic back on a');
  assert.equal(await metric(g, 'r1_gateway_breaker_state', `worker="127.0.0.1:${a.port}"`), 0);
});

test('consecutive failures open the breaker', async () => {
  const a = await worker(['--name', 'a', '--fail-before-first', '8']);  // RESOURCE_EXHAUSTED
  const b = await worker(['--name', 'b']);
  const g = await gateway([a, b], ['--breaker-failures', '3', '--breaker-cooldown-ms', '60000']);
  for (let i = 0; i < 30; i++) assert.equal((await postJson(`${g.url}/v1/chat/completions`, chat('x'))).status, 200);
  const label = `worker="127.0.0.1:${a.port}"`;
  assert.equal(await metric(g, 'r1_gateway_breaker_state', label), 2);
  assert.equal(await metric(g, 'r1_gateway_upstream_attempts_total', label), 3);
});

test('a client that disconnects cancels its gRPC call at once', async () => {
  const w = await worker(['--name', 'a']);
  const g = await gateway([w]);
  const ctrl = new AbortController();
  const r = await fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: ctrl.signal,
    body: JSON.stringify(chat('@tokens=1000 @interval=20', { stream: true })) });
  const reader = r.body.getReader();
  await reader.read();
  assert.equal((await getLoad(w.port)).running, 1);
  const t0 = Date.now();
  ctrl.abort();
  await waitFor(async () => (await getLoad(w.port)).running === 0, 'the worker to drop the stream', 3000);
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 0, 'no active streams');
  assert.equal(await metric(g, 'r1_gateway_requests_total', 'code="499"'), 1);
  // A non-streamed request whose client leaves is cancelled too.
  const ctrl2 = new AbortController();
  const p = fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: ctrl2.signal,
    body: JSON.stringify(chat('@tokens=1000 @interval=20')) }).catch(() => null);
  await waitFor(async () => (await getLoad(w.port)).running === 1, 'the stream to start');
  ctrl2.abort();
  await p;
  await waitFor(async () => (await getLoad(w.port)).running === 0, 'cancelled', 3000);
});

test('SIGTERM drains: streams in flight finish, then the gateway exits', async () => {
  const w = await worker(['--name', 'a']);
  const g = await startGateway([w]);
  await waitReady(g);
  const inflight = readStream(`${g.url}/v1/chat/completions`, chat('@tokens=20 @interval=25', { stream: true }), 'stop');
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 1, 'a stream');
  const exited = new Promise((resolve) => g.proc.once('exit', (code) => resolve(code)));
  g.proc.kill('SIGTERM');
  const r = await inflight;
  assert.ok(r.ok, r.text.slice(-200));
  assert.equal(await exited, 0);
});
