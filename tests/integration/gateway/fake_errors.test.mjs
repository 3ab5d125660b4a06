// Every bad-input case, limits and API keys, against the gateway with fake workers.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { nodeRequire, startFakeWorker, startGateway, waitReady, postJson, curl, sleep, stop, metric, waitFor } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
let w, g, gKeys, gSmall;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-'));

test.before(async () => {
  w = await startFakeWorker(['--name', 'a', '--pressure-file', path.join(tmp, 'pressure')]);
  const keyFile = path.join(tmp, 'keys');
  fs.writeFileSync(keyFile, '# keys\nsk-test-one\nsk-test-two\n');
  g = await startGateway([w], ['--max-concurrent-requests', '2', '--breaker-cooldown-ms', '200']);
  gKeys = await startGateway([w], ['--api-key-file', keyFile]);
  gSmall = await startGateway([w], ['--max-body-bytes', '1000', '--max-header-bytes', '2000', '--header-timeout', '1', '--idle-timeout', '1']);
  for (const x of [g, gKeys, gSmall]) await waitReady(x);
});
test.after(async () => { for (const p of [g, gKeys, gSmall, w]) if (p) await stop(p); fs.rmSync(tmp, { recursive: true }); });

function assertError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.equal(typeof r.json.error.type, 'string');
  assert.ok('param' in r.json.error && 'code' in r.json.error);
  if (param !== undefined) assert.equal(r.json.error.param, param);
}

const msgs = [{ role: 'user', content: 'hi' }];
const chatCases = [
  [{ messages: msgs }, 'model'],
  [{ model: 1, messages: msgs }, 'model'],
  [{ model: 'm' }, 'messages'],
  [{ model: 'm', messages: [] }, 'messages'],
  [{ model: 'm', messages: 'hi' }, 'messages'],
  [{ model: 'm', messages: [{ role: 'user' }] }, 'messages[0].content'],
  [{ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
  [{ model: 'm', messages: msgs, temperature: 'hot' }, 'temperature'],
  [{ model: 'm', messages: msgs, temperature: 3 }, 'temperature'],
  [{ model: 'm', messages: msgs, top_p: 0 }, 'top_p'],
  [{ model: 'm', messages: msgs, top_k: -5 }, 'top_k'],
  [{ model: 'm', messages: msgs, min_p: 1.5 }, 'min_p'],
  [{ model: 'm', messages: msgs, max_tokens: 0 }, 'max_tokens'],
  [{ model: 'm', messages: msgs, max_tokens: 2.5 }, 'max_tokens'],
  [{ model: 'm', messages: msgs, max_completion_tokens: 'x' }, 'max_completion_tokens'],
  [{ model: 'm', messages: msgs, stop: 3 }, 'stop'],
  [{ model: 'm', messages: msgs, seed: 'x' }, 'seed'],
  [{ model: 'm', messages: msgs, presence_penalty: 5 }, 'presence_penalty'],
  [{ model: 'm', messages: msgs, frequency_penalty: -5 }, 'frequency_penalty'],
  [{ model: 'm', messages: msgs, repetition_penalty: -1 }, 'repetition_penalty'],
  [{ model: 'm', messages: msgs, logprobs: 'yes' }, 'logprobs'],
  [{ model: 'm', messages: msgs, logprobs: true, top_logprobs: 50 }, 'top_logprobs'],
  [{ model: 'm', messages: msgs, n: 100 }, 'n'],
  [{ model: 'm', messages: msgs, stream: 1 }, 'stream'],
  [{ model: 'm', messages: msgs, user: 5 }, 'user'],
];

test('chat: wrong types, out-of-range values and missing fields give 400 naming the param', async () => {
  for (const [body, param] of chatCases) {
    assertError(await postJson(`${g.url}/v1/chat/completions`, body), 400, param);
  }
});

test('completions: bad prompts give 400 naming prompt', async () => {
  for (const prompt of [undefined, [], {}, [1, -1], ['a', 1], [[1], 'a'], [true]]) {
    assertError(await postJson(`${g.url}/v1/completions`, { model: 'm', prompt }), 400, 'prompt');
  }
  assertError(await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: 'x', logprobs: 9 }), 400, 'logprobs');
});

test('malformed JSON, non-objects and non-UTF-8 bodies give 400', async () => {
  for (const body of ['{', '', 'null', '[1]', '{"model":"m",}', 'model=m']) {
    assertError(await postJson(`${g.url}/v1/chat/completions`, body), 400, null);
  }
  const bad = Buffer.from('{"model":"\xff\xfe","messages":[]}', 'latin1');
  assertError(await postJson(`${g.url}/v1/chat/completions`, new Uint8Array(bad)), 400, null);
  assert.ok(await metric(g, 'r1_gateway_rejected_requests_total', 'reason="bad_request"') >= chatCases.length);
});

test('unknown routes 404, wrong methods 405', async () => {
  assertError(await postJson(`${g.url}/v1/nothing`, {}), 404);
  const r = await fetch(`${g.url}/v1/chat/completions`);
  assert.equal(r.status, 405);
});

test('too-large body gives 413, too-large header 431, slow header is cut off', async () => {
  const big = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] };
  const r = await postJson(`${gSmall.url}/v1/chat/completions`, big);
  assertError(r, 413);
  assert.equal(await metric(gSmall, 'r1_gateway_rejected_requests_total', 'reason="too_large"'), 1);
  const h = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `x-big: ${'y'.repeat(4000)}`, `${gSmall.url}/healthz`]);
  assert.equal(h.stdout, '431');
  // A client that never finishes its header is disconnected after --header-timeout.
  const closed = await new Promise((resolve) => {
    const s = net.connect(gSmall.port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
    const t0 = Date.now();
    s.on('close', () => resolve(Date.now() - t0));
    s.on('error', () => {});
  });
  assert.ok(closed >= 900 && closed < 5000, `closed after ${closed} ms`);
  // A kept-alive connection that stays idle is closed after --idle-timeout.
  const idle = await new Promise((resolve) => {
    let answeredAt = null;
    const s = net.connect(gSmall.port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', (d) => { if (String(d).includes('ok')) answeredAt = Date.now(); });
    s.on('close', () => resolve(answeredAt ? Date.now() - answeredAt : -1));
    s.on('error', () => {});
  });
  assert.ok(idle >= 900 && idle < 5000, `idle connection closed after ${idle} ms`);
});

test('API keys: Bearer on /v1 routes, health and metrics open', async () => {
  const noKey = await fetch(`${gKeys.url}/v1/models`);
  assert.equal(noKey.status, 401);
  assert.equal((await noKey.json()).error.code, 'invalid_api_key');
  const wrong = await fetch(`${gKeys.url}/v1/models`, { headers: { authorization: 'Bearer sk-test-three' } });
  assert.equal(wrong.status, 401);
  const prefix = await fetch(`${gKeys.url}/v1/models`, { headers: { authorization: 'Bearer sk-test-on' } });
  assert.equal(prefix.status, 401);
  const chat = await postJson(`${gKeys.url}/v1/chat/completions`, { model: 'm', messages: msgs });
  assert.equal(chat.status, 401);
  for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(gKeys.url + p)).status, 200);
  const client = new OpenAI({ baseURL: `${gKeys.url}/v1`, apiKey: 'sk-test-two', maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'm', messages: msgs });
  assert.equal(r.choices[0].finish_reason, 'stop');
  const bad = new OpenAI({ baseURL: `${gKeys.url}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'm', messages: msgs }), (e) => e.status === 401);
  assert.equal(await metric(gKeys, 'r1_gateway_rejected_requests_total', 'reason="unauthorized"'), 5);
});

test('the concurrent-request cap gives 429 with the OpenAI error shape', async () => {
  const slow = { model: 'm', messages: [{ role: 'user', content: '@tokens=20 @interval=50' }] };
  const inflight = [postJson(`${g.url}/v1/chat/completions`, slow), postJson(`${g.url}/v1/chat/completions`, slow)];
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 2, 'two streams');
  const r = await postJson(`${g.url}/v1/chat/completions`, slow);
  assertError(r, 429);
  assert.equal(r.json.error.type, 'rate_limit_error');
  assert.ok(r.headers.get('retry-after'));
  for (const x of await Promise.all(inflight)) assert.equal(x.status, 200);
  assert.equal(await metric(g, 'r1_gateway_rejected_requests_total', 'reason="overload"'), 1);
});

test('503 with Retry-After when every breaker is open, and when no worker is up', async () => {
  fs.writeFileSync(path.join(tmp, 'pressure'), '');
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state')) === 2, 'breaker open');
  const r = await postJson(`${g.url}/v1/chat/completions`, { model: 'm', messages: msgs });
  assertError(r, 503);
  assert.match(r.json.error.message, /circuit breaker/);
  assert.equal(r.headers.get('retry-after'), '1');
  fs.rmSync(path.join(tmp, 'pressure'));
  await waitFor(async () => (await postJson(`${g.url}/v1/chat/completions`, { model: 'm', messages: msgs })).status === 200,
    'breaker closed again');

  // A gateway whose only worker is gone.
  const dead = await startFakeWorker();
  const g2 = await startGateway([dead]);
  await waitReady(g2);
  await stop(dead, 'SIGKILL');
  await waitFor(async () => (await fetch(`${g2.url}/readyz`)).status === 503, 'not ready');
  const r2 = await postJson(`${g2.url}/v1/chat/completions`, { model: 'm', messages: msgs });
  assertError(r2, 503);
  assert.ok(r2.headers.get('retry-after'));
  assert.equal((await fetch(`${g2.url}/healthz`)).status, 200);
  await stop(g2);
});

test('connections over --max-connections are refused with 503', async () => {
  const g3 = await startGateway([w], ['--max-connections', '2']);
  await waitReady(g3);
  // waitReady's fetch keeps one connection open; hold one more, the third is refused.
  const open = (p) => new Promise((resolve) => { const s = net.connect(p, '127.0.0.1', () => resolve(s)); });
  const extra = [await open(g3.port)];
  await sleep(100);
  const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${g3.url}/healthz`]);
  assert.equal(r.stdout, '503');
  for (const s of extra) s.destroy();
  await stop(g3);
});

test('Expect: 100-continue is answered at once', async () => {
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(3000) }] });
  const t0 = Date.now();
  const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'content-type: application/json',
    '-d', body, `${g.url}/v1/chat/completions`]);
  assert.equal(r.stdout, '200');
  assert.ok(Date.now() - t0 < 900, `took ${Date.now() - t0} ms (curl waits 1 s without 100 Continue)`);
});

test('pipelined requests are answered in order; Connection: close is honoured', async () => {
  const text = await new Promise((resolve) => {
    let out = '';
    const body = JSON.stringify({ model: 'm', prompt: '@tokens=2', max_tokens: 2 });
    const post = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const s = net.connect(g.port, '127.0.0.1', () =>
      s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n${post}GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => { out += d; });
    s.on('close', () => resolve(out));
    s.on('error', () => {});
  });
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '200', '200']);
  const okAt = text.indexOf('ok\n'), cmplAt = text.indexOf('text_completion'), readyAt = text.indexOf('ready\n');
  assert.ok(okAt < cmplAt && cmplAt < readyAt, text);
  assert.match(text, /Connection: close/);
});

test('bad timeout flags: one clear line on stderr and exit status 2', async () => {
  const { spawnSync } = await import('node:child_process');
  for (const [flag, value] of [['--first-token-timeout', '-1'], ['--first-token-timeout', 'nan'],
    ['--request-timeout', '1e300']]) {
    const r = spawnSync(process.env.R1_GATEWAY, ['--workers', '127.0.0.1:1', flag, value],
      { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 2, `${flag} ${value}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.includes(flag), r.stderr);
  }
});
