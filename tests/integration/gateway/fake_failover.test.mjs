// Streams that survive their worker, and hung workers that cost seconds: kill -9 and SIGSTOP of
// a fake worker under 12 concurrent streams (every stream completes, its tokens in order, none
// repeated or missing, no error event), a stream that stalls mid-way (--stall-timeout), a worker
// whose health turns NOT_SERVING (its engine watchdog) while its streams hang, and routing
// decisions of the three policies; fake workers.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeWorker, startGateway, waitReady, postJson, sseEvents, sleep, stop, metric, waitFor } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-failover-'));
const started = [];
async function worker(args) { const w = await startFakeWorker(args); started.push(w); return w; }
async function gateway(ws, args = []) { const g = await startGateway(ws, args); started.push(g); await waitReady(g, ws.length); return g; }
test.after(async () => {
  for (const p of started.reverse()) { try { p.proc.kill('SIGCONT'); } catch {} await stop(p, 'SIGKILL'); }
  fs.rmSync(tmp, { recursive: true });
});

const chat = (content, extra = {}) => ({ model: 'm', messages: [{ role: 'user', content }], ...extra });

// Streams one chat request; resolves the text, when each delta arrived, the finish reason and
// whether an error event came.
async function stream(g, content) {
  const t0 = Date.now();
  const r = await fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat(content, { stream: true })) });
  assert.equal(r.status, 200);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '', text = '', finish = null, error = false;
  const at = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const [data] = sseEvents(buf.slice(0, cut + 2));
      buf = buf.slice(cut + 2);
      if (data === '[DONE]') continue;
      const e = JSON.parse(data);
      if (e.error) { error = true; continue; }
      const c = e.choices[0];
      const piece = (c.delta.reasoning_content ?? '') + (c.delta.content ?? '');
      if (piece) { text += piece; at.push(Date.now()); }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, at, t0, finish, error };
}

// "a-0 a-1 b-2 ..." -> the token indices and the workers that made them.
function tokens(text) {
  return text.trim().split(' ').map((t) => { const [w, i] = t.split('-'); return { w, i: Number(i) }; });
}
function assertWhole(r, n) {
  assert.equal(r.error, false, `error event in ${r.text}`);
  assert.equal(r.finish, 'stop', r.text);
  assert.deepEqual(tokens(r.text).map((t) => t.i), [...Array(n).keys()], `tokens missing or repeated: ${r.text}`);
}
const maxGap = (r) => Math.max(...r.at.slice(1).map((t, i) => t - r.at[i]));

test('kill -9 of a worker under 12 concurrent streams: every stream completes, nothing lost or repeated', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b']), await worker(['--name', 'c'])];
  const g = await gateway(ws);
  const all = Array.from({ length: 12 }, () => stream(g, '@tokens=30 @interval=30'));
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 12, '12 streams');
  await sleep(300);
  const killedAt = Date.now();
  await stop(ws[0], 'SIGKILL');
  const results = await Promise.all(all);
  let moved = 0;
  const gaps = [];
  for (const r of results) {
    assertWhole(r, 30);
    const t = tokens(r.text);
    if (t[0].w === 'a' && r.at.at(-1) > killedAt) {  // on the killed worker, not yet complete
      moved++;
      assert.notEqual(t.at(-1).w, 'a', 'a stream of the dead worker did not move');
      // The first token after the kill came soon: the resume itself costs milliseconds.
      gaps.push(r.at.find((x) => x > killedAt) - killedAt);
    }
  }
  assert.ok(moved >= 2, `only ${moved} streams were on the killed worker`);
  console.log(`# ${moved} streams moved; first token after the kill: max ${Math.max(...gaps)} ms`);
  assert.ok(Math.max(...gaps) < 1000, `resumed streams waited ${gaps} ms`);
  assert.ok(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="unavailable"') >= moved);
});

test('SIGSTOP of a worker under load: its streams move on within seconds, new requests avoid it', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b']), await worker(['--name', 'c'])];
  const g = await gateway(ws, ['--health-interval-ms', '250', '--health-timeout-ms', '250',
    '--suspect-after-failed-checks', '2', '--first-token-timeout', '30', '--stall-timeout', '30']);
  const all = Array.from({ length: 12 }, () => stream(g, '@tokens=40 @interval=40'));
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 12, '12 streams');
  await sleep(300);
  const stoppedAt = Date.now();
  ws[0].proc.kill('SIGSTOP');
  // A request sent while the worker is stopped is served without waiting for any timeout.
  await sleep(100);
  const late = await stream(g, '@tokens=3');
  assertWhole(late, 3);
  const results = await Promise.all(all);
  const stalls = [];
  for (const r of results) {
    assertWhole(r, 40);
    if (tokens(r.text)[0].w === 'a') stalls.push(maxGap(r));
  }
  assert.ok(stalls.length >= 2, `only ${stalls.length} streams were on the stopped worker`);
  console.log(`# ${stalls.length} streams on the stopped worker; longest pause ${Math.max(...stalls)} ms; ` +
    `a request sent 100 ms after the stop got its first token after ${late.at[0] - late.t0} ms`);
  // Two failed 250 ms polls, not the 30 s timeouts nor gRPC's keepalive.
  assert.ok(Math.max(...stalls) < 3000, `streams paused ${stalls} ms`);
  assert.ok(late.at[0] - late.t0 < 3000);
  assert.ok(await metric(g, 'r1_gateway_worker_suspect_total', `worker="127.0.0.1:${ws[0].port}"`) >= 1);
  assert.ok(Date.now() - stoppedAt < 20000);
  ws[0].proc.kill('SIGCONT');
});

test('a stream that stalls mid-way resumes elsewhere after --stall-timeout', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b'])];
  const g = await gateway(ws, ['--stall-timeout', '0.5']);
  const r = await stream(g, '@tokens=12 @interval=20 @stall_after=5');
  assertWhole(r, 12);
  const t = tokens(r.text);
  assert.notEqual(t[5].w, t[4].w, r.text);
  const gap = maxGap(r);
  assert.ok(gap >= 450 && gap < 2000, `paused ${gap} ms`);
  assert.equal(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="stalled"'), 1);
});

test('a worker whose health says NOT_SERVING (engine watchdog) loses its hung streams to the others', async () => {
  const flag = path.join(tmp, 'not-serving');
  const hung = await worker(['--name', 'h', '--hang', '--not-serving-file', flag]);
  const good = await worker(['--name', 'g']);
  const g = await gateway([hung, good], ['--first-token-timeout', '120']);
  const all = Array.from({ length: 4 }, () => stream(g, '@tokens=3 @interval=100'));
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams', `worker="127.0.0.1:${hung.port}"`)) >= 1,
    'a request on the hung worker');
  const t0 = Date.now();
  fs.writeFileSync(flag, '');
  for (const r of await Promise.all(all)) assertWhole(r, 3);
  const took = Date.now() - t0;
  console.log(`# requests on the hung worker were served elsewhere ${took} ms after it said NOT_SERVING`);
  assert.ok(took < 3000, `took ${took} ms`);
  assert.ok(await metric(g, 'r1_gateway_retries_total', 'reason="unavailable"') >= 1);
});

test('routing: prefix-aware keeps a shared prefix on one worker; load avoids a reported queue', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b']),
    await worker(['--name', 'c', '--report-waiting', '50'])];
  const system = (k) => `You are assistant number ${k}. `.repeat(20);
  // Who served each request, per system prompt, sent one at a time.
  async function served(policy) {
    const g = await gateway(ws, ['--routing', policy]);
    const by = {};
    for (let i = 0; i < 18; i++) {
      const k = i % 3;
      const r = await postJson(`${g.url}/v1/chat/completions`, { model: 'm', max_tokens: 1,
        messages: [{ role: 'system', content: system(k) }, { role: 'user', content: `question ${i}` }] });
      assert.equal(r.status, 200, r.text);
      (by[k] ??= new Set()).add(r.json.choices[0].message.reasoning_content[0]);
    }
    await stop(g, 'SIGKILL');
    return Object.values(by).map((s) => [...s].sort().join(''));
  }
  const prefix = await served('prefix-aware');
  // Each system prompt stays with one worker; c (a long reported queue) gets none.
  for (const s of prefix) assert.equal(s.length, 1, `a prefix was spread over ${s}`);
  assert.ok(!prefix.includes('c'), prefix.join());
  const load = await served('load');
  assert.ok(load.every((s) => !s.includes('c')), load.join());
  // Least connections sees only this gateway's streams: c gets its share, prefixes spread.
  const lc = await served('least-connections');
  assert.ok(lc.some((s) => s.includes('c')), lc.join());
  assert.ok(lc.some((s) => s.length > 1), lc.join());
});

// One call carries a request's n choices; when it fails, each unfinished choice goes on alone.
// Streams a completion with n choices; resolves each choice's text and finish reason, and
// whether an error event came.
async function streamChoices(g, prompt, n) {
  const r = await fetch(`${g.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt, n, stream: true }) });
  assert.equal(r.status, 200);
  const events = sseEvents(await r.text());
  assert.equal(events.at(-1), '[DONE]');
  const text = Array(n).fill(''), finish = Array(n).fill(null);
  let error = false;
  for (const data of events.slice(0, -1)) {
    const e = JSON.parse(data);
    if (e.error) { error = true; continue; }
    for (const c of e.choices) {
      text[c.index] += c.text;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  return { text, finish, error };
}

test('kill -9 of the worker mid-stream with n = 4: every choice resumes alone elsewhere and completes', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b'])];
  const g = await gateway(ws);
  // The worker the call lands on kills itself after 5 tokens of each choice.
  const r = await streamChoices(g, '@tokens=20 @interval=20 @die_after=5', 4);
  assert.equal(r.error, false, JSON.stringify(r.text));
  const first = tokens(r.text[0])[0].w;
  for (let k = 0; k < 4; k++) {
    assert.equal(r.finish[k], 'stop');
    const t = tokens(r.text[k]);
    assert.deepEqual(t.map((x) => x.i), [...Array(20).keys()], `choice ${k}: ${r.text[k]}`);
    // Made by the first worker up to the kill, by the other one after it.
    assert.deepEqual(t.map((x) => x.w), [...Array(20)].map((_, i) => (i < 5) === (first === 'a') ? 'a' : 'b'),
      `choice ${k}: ${r.text[k]}`);
  }
  assert.equal(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="unavailable"'), 4);
});

test('a choice the worker fails mid-stream resumes alone; the call goes on for the others', async () => {
  const ws = [await worker(['--name', 'a']), await worker(['--name', 'b'])];
  const g = await gateway(ws, ['--breaker-failures', '100']);
  const r = await streamChoices(g, '@tokens=12 @interval=10 @fail_after=4 @fail_choice=2', 3);
  assert.equal(r.error, false, JSON.stringify(r.text));
  const on = tokens(r.text[0])[0].w, other = on === 'a' ? 'b' : 'a';
  for (let k = 0; k < 3; k++) {
    assert.equal(r.finish[k], 'stop');
    const t = tokens(r.text[k]);
    assert.deepEqual(t.map((x) => x.i), [...Array(12).keys()], `choice ${k}: ${r.text[k]}`);
    assert.deepEqual(t.map((x) => x.w), [...Array(12)].map((_, i) => (k === 2 && i >= 4 ? other : on)),
      `choice ${k}: ${r.text[k]}`);
  }
  assert.equal(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="internal"'), 1);
});

test('a worker that tags a message with a choice the request lacks: a clean error, and the gateway serves on', async () => {
  const w = await worker(['--name', 'a']);
  const g = await gateway([w], ['--max-attempts', '1']);
  for (const stream of [false, true]) {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=3 @bad_choice_index', n: 2, stream });
    assert.equal(r.status, 500, r.text);
    const e = JSON.parse(r.text).error;
    assert.match(e.message, /sent choice_index 2 for a request of 2 choice\(s\)/);
    assert.doesNotMatch(e.message, /127\.0\.0\.1/);
  }
  const ok = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=3', n: 2 });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json.choices.map((c) => c.text), ['a-0 a-1 a-2 ', 'a-0 a-1 a-2 ']);
});
