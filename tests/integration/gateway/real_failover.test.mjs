// Streams that survive a real worker's death or stop, against an undisturbed run: real r1-worker
// processes with the tiny model (float32) on CPU, the gateway in front, and r1-generate (no
// server, no batching, no resume) as the reference. Also: the prefix cache under preemption,
// memory pressure that ends with the work, a worker whose engine thread hangs (its watchdog
// turns health NOT_SERVING and the gateway moves its streams), a new request on a stopped worker,
// prefix-aware routing keeping a shared prefix on the worker that caches it, and n choices on
// one call (choice k samples with seed + k, before and after a kill -9).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateOn, getLoad, processes, postJson, sseEvents, stop, metric, waitFor } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-realfail-'));
const model = path.join(tmp, 'model');

// float32: its CPU kernels give a token the same logits however tokens are grouped into steps
// (decoded, batched, prefilled after a resume or a preemption); bfloat16 sums in another order
// then, and a choice at a near-tie can flip.
const { started, worker: realWorker, gateway } = processes(model, ['--dtype', 'float32']);
// The ids of prompt k: deterministic, different per k.
function promptIds(k, n = 12) {
  let x = 2654435761 * (k + 1) >>> 0;
  return Array.from({ length: n }, () => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return 1000 + x % 100000; });
}
// The reference: r1-generate's text for the same prompt and sampling, alone, undisturbed (each
// asked once: the tests share prompts).
const references = new Map();
function reference(ids, maxTokens, { temperature = 0, top_p = 1, seed = 0 } = {}) {
  const key = JSON.stringify([ids, maxTokens, temperature, top_p, seed]);
  if (!references.has(key)) {
    const out = execFileSync(process.env.R1_GENERATE, ['--model', model, '--prompt-ids', ids.join(','),
      '--max-tokens', String(maxTokens), '--ignore-eos', '--output', 'text', '--threads', '1', '--dtype', 'float32',
      '--temperature', String(temperature), '--top-p', String(top_p), '--seed', String(seed)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    references.set(key, out.slice(0, -1));  // its final newline
  }
  return references.get(key);
}
// A streamed completion with progress.length choices (n), on one worker call: each choice's
// text and finish reason, the usage, whether an error event came. Live, through progress[k]:
// choice k's text chunks so far and, after progress[k].mark is set, the longest wait between
// its text chunks (the stall the client saw).
async function streamChoices(g, body, progress) {
  const r = await fetch(`${g.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'model', stream: true, stream_options: { include_usage: true }, ignore_eos: true,
      ...(progress.length > 1 ? { n: progress.length } : {}), ...body }) });
  assert.equal(r.status, 200);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  const text = progress.map(() => ''), finish = progress.map(() => null);
  let raw = '', usage = null, error = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    raw += dec.decode(value, { stream: true });
    const cut = raw.lastIndexOf('\n\n');
    if (cut < 0) continue;
    for (const data of sseEvents(raw.slice(0, cut + 2))) {
      if (data === '[DONE]') continue;
      const e = JSON.parse(data);
      if (e.error) { error = true; continue; }
      if (e.usage) usage = e.usage;
      for (const c of e.choices) {
        text[c.index] += c.text;
        if (c.finish_reason) finish[c.index] = c.finish_reason;
        if (c.text) {
          const p = progress[c.index];
          p.chunks++;
          const now = Date.now();
          if (p.mark) p.gap = Math.max(p.gap || 0, now - Math.max(p.last, p.mark));
          p.last = now;
        }
      }
    }
    raw = raw.slice(cut + 2);
  }
  return { text, finish, usage, error };
}
// One streamed completion (one choice): its text, finish reason, usage, whether an error came.
async function streamCompletion(g, body, progress) {
  const r = await streamChoices(g, body, [progress]);
  return { ...r, text: r.text[0], finish: r.finish[0] };
}

// The worker (of `ws`) with the most streams from the gateway.
async function busiest(g, ws) {
  let best = null, most = -1;
  for (const w of ws) {
    const n = await metric(g, 'r1_gateway_active_streams', `worker="127.0.0.1:${w.port}"`);
    if (n > most) { most = n; best = w; }
  }
  return { worker: best, streams: most };
}

// A counter or gauge (no labels) from a worker started with --metrics-listen 127.0.0.1:0.
async function workerMetric(w, name) {
  const port = w.stdout().match(/metrics on [^\s]*:(\d+)/)[1];
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))[1]);
}

test.before(() => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--dtype', 'float32', '--out', model, '--tokenizer',
    path.join(process.env.R1_SOURCE_DIR, '.cache/tokenizer/tokenizer.json')], { stdio: 'ignore' });
});
test.after(async () => {
  for (const p of started.reverse()) { try { p.proc.kill('SIGCONT'); } catch {} await stop(p, 'SIGKILL'); }
  fs.rmSync(tmp, { recursive: true });
});

// Starts n streams, waits until each has some output, then sends `signal` to the busiest worker;
// checks every stream against its reference. SIGSTOP runs with a 2 s --stall-timeout and slow
// health polls, so that the stall timeout is what moves the streams.
async function underLoad(signal, { sampled = false, n = 8, maxTokens = 96 } = {}) {
  const ws = await Promise.all([0, 1, 2].map(() => realWorker()));
  const g = await gateway(ws, signal === 'SIGSTOP'
    ? ['--stall-timeout', '2', '--health-interval-ms', '10000', '--breaker-cooldown-ms', '60000']
    : ['--health-interval-ms', '200', '--health-timeout-ms', '1000', '--suspect-after-failed-checks', '2',
      '--breaker-cooldown-ms', '60000']);
  const bodies = Array.from({ length: n }, (_, k) => ({ prompt: promptIds(k), max_tokens: maxTokens,
    temperature: sampled ? 0.8 : 0, top_p: sampled ? 0.9 : 1, ...(sampled ? { seed: 100 + k } : {}) }));
  const progress = bodies.map(() => ({ chunks: 0 }));
  const all = bodies.map((b, k) => streamCompletion(g, b, progress[k]));
  await waitFor(async () => progress.every((p) => p.chunks >= 5), 'every stream under way', 60000);
  const { worker, streams } = await busiest(g, ws);
  const live = progress.filter((p) => p.chunks < maxTokens);
  const t0 = Date.now();
  for (const p of progress) p.mark = t0;
  worker.proc.kill(signal);
  const results = await Promise.all(all);
  for (let k = 0; k < n; k++) {
    const r = results[k];
    assert.equal(r.error, false, `stream ${k} got an error event`);
    assert.equal(r.finish, 'length');
    assert.equal(r.usage.completion_tokens, maxTokens);
    const want = reference(bodies[k].prompt, maxTokens, sampled ? { temperature: 0.8, top_p: 0.9, seed: 100 + k } : {});
    assert.equal(r.text, want, `stream ${k} differs from the undisturbed run`);
  }
  const resumed = await metric(g, 'r1_gateway_stream_resumes_total');
  const gap = Math.max(...live.map((p) => p.gap));
  console.log(`# ${signal}: ${streams} of ${n} streams on the worker, ${resumed} resumed; longest wait between ` +
    `text chunks after the signal ${gap} ms; all ${n} equal r1-generate`);
  assert.ok(resumed >= 1, 'no stream was resumed');
  if (signal === 'SIGSTOP') {
    assert.ok(await metric(g, 'r1_gateway_stream_resumes_total', 'reason="stalled"') >= 1);
    assert.ok(gap < 2000 + 5000, `a stream waited ${gap} ms with a 2 s stall timeout`);
    worker.proc.kill('SIGCONT');
  }
  for (const p of [g, ...ws]) await stop(p, 'SIGKILL');
}

// n choices travel on one Generate call; the worker samples choice k with seed + k, which is
// what the gateway asked for when it sent one call per choice, so outputs are unchanged.
test('n = 3 on one call: choice k equals r1-generate with seed + k, streamed and whole', async () => {
  const w = await realWorker();
  const g = await gateway([w]);
  const ids = promptIds(40);
  const sampling = { temperature: 0.8, top_p: 0.9 };
  const want = [0, 1, 2].map((k) => reference(ids, 48, { ...sampling, seed: 20 + k }));
  assert.notEqual(want[0], want[1]);
  const body = { prompt: ids, max_tokens: 48, n: 3, seed: 20, ...sampling };
  const streamed = await streamChoices(g, body, [0, 1, 2].map(() => ({ chunks: 0 })));
  assert.equal(streamed.error, false);
  assert.deepEqual(streamed.text, want);
  assert.deepEqual(streamed.finish, ['length', 'length', 'length']);
  assert.equal(streamed.usage.completion_tokens, 3 * 48);
  assert.equal(streamed.usage.prompt_tokens, ids.length);  // once, not per choice
  const whole = await postJson(`${g.url}/v1/completions`, { model: 'model', ignore_eos: true, ...body });
  assert.equal(whole.status, 200, whole.text);
  assert.deepEqual(whole.json.choices.map((c) => [c.index, c.text]), want.map((t, k) => [k, t]));
  // The same, asked for one choice at a time with the derived seeds.
  for (let k = 0; k < 3; k++) {
    const one = await postJson(`${g.url}/v1/completions`, { model: 'model', ignore_eos: true, ...body, n: 1, seed: 20 + k });
    assert.equal(one.json.choices[0].text, want[k], `seed ${20 + k}`);
  }
  // echo with log-probabilities: every choice starts with the prompt and its log-probabilities,
  // sent by the worker once.
  const echoed = await postJson(`${g.url}/v1/completions`,
    { model: 'model', ignore_eos: true, ...body, max_tokens: 4, n: 2, echo: true, logprobs: 1 });
  assert.equal(echoed.status, 200, echoed.text);
  const single = await postJson(`${g.url}/v1/completions`,
    { model: 'model', ignore_eos: true, ...body, max_tokens: 4, n: 1, seed: 21, echo: true, logprobs: 1 });
  const c1 = echoed.json.choices[1], s1 = single.json.choices[0];
  assert.equal(c1.text, s1.text);
  assert.deepEqual(c1.logprobs.tokens, s1.logprobs.tokens);
  assert.equal(c1.logprobs.tokens.length, ids.length + 4);
  assert.equal(echoed.json.choices[0].logprobs.tokens.length, ids.length + 4);
  assert.deepEqual(echoed.json.choices[0].logprobs.tokens.slice(0, ids.length), s1.logprobs.tokens.slice(0, ids.length));
  for (const p of [g, w]) await stop(p, 'SIGKILL');
});

test('kill -9 mid-stream with n = 3 sampled choices: each resumes alone and equals r1-generate with seed + k', async () => {
  const ws = await Promise.all([0, 1].map(() => realWorker()));
  const g = await gateway(ws, ['--health-interval-ms', '200', '--health-timeout-ms', '1000',
    '--suspect-after-failed-checks', '2', '--breaker-cooldown-ms', '60000']);
  const ids = promptIds(41);
  const sampling = { temperature: 0.8, top_p: 0.9 };
  const maxTokens = 160;
  const progress = [0, 1, 2].map(() => ({ chunks: 0 }));
  const done = streamChoices(g, { prompt: ids, max_tokens: maxTokens, n: 3, seed: 70, ...sampling }, progress);
  await waitFor(async () => progress.every((p) => p.chunks >= 5), 'every choice under way', 60000);
  const { worker, streams } = await busiest(g, ws);
  assert.equal(streams, 3, 'one call of three sequences');
  worker.proc.kill('SIGKILL');
  const r = await done;
  assert.equal(r.error, false);
  assert.deepEqual(r.finish, ['length', 'length', 'length']);
  assert.equal(r.usage.completion_tokens, 3 * maxTokens);
  for (let k = 0; k < 3; k++)
    assert.equal(r.text[k], reference(ids, maxTokens, { ...sampling, seed: 70 + k }), `choice ${k} differs from the undisturbed run`);
  const resumed = await metric(g, 'r1_gateway_stream_resumes_total');
  console.log(`# kill -9 under n = 3: ${resumed} choice(s) resumed; all equal r1-generate with seed + k`);
  assert.ok(resumed >= 1, 'no choice was resumed');
  for (const p of [g, ...ws]) await stop(p, 'SIGKILL');
});

test('kill -9 of a worker under 8 concurrent greedy streams: each equals the undisturbed run', async () => {
  await underLoad('SIGKILL');
});

test('SIGSTOP of a worker under 8 concurrent streams: each resumes after the stall timeout and equals the undisturbed run', async () => {
  await underLoad('SIGSTOP');
});

test('SIGSTOP of an idle worker: a new request routed to it is served elsewhere within seconds (default health polls)', async () => {
  const ws = await Promise.all([0, 1].map(() => realWorker()));
  // least-connections with four requests at once: while one is on the live worker, the next
  // goes to the stopped one.
  const g = await gateway(ws, ['--routing', 'least-connections']);
  ws[0].proc.kill('SIGSTOP');
  const t0 = Date.now();
  const times = await Promise.all([0, 1, 2, 3].map(async (k) => {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: promptIds(k), max_tokens: 16 });
    assert.equal(r.status, 200);
    return Date.now() - t0;
  }));
  const la = `worker="127.0.0.1:${ws[0].port}"`;
  const tried = await metric(g, 'r1_gateway_upstream_attempts_total', la);
  console.log(`# SIGSTOP idle worker: requests served after ${times.join(', ')} ms (${tried} attempt(s) on the stopped worker)`);
  assert.ok(tried >= 1, 'no request went to the stopped worker: the test did not test it');
  assert.ok(Math.max(...times) < 8000, `took ${Math.max(...times)} ms`);
  ws[0].proc.kill('SIGCONT');
  for (const p of [g, ...ws]) await stop(p, 'SIGKILL');
});

// A sampled stream alone on its worker. In float32 on CPU neither batching nor the prefill of a
// resume changes a token's logits (cpu_f32.h), so the n = 3 test above, batched and then
// resumed, must match exactly too; this one is the plain single-stream case.
test('kill -9 under a sampled stream: it continues the same random sequence', async () => {
  await underLoad('SIGKILL', { sampled: true, n: 1, maxTokens: 200 });
});

test('the prefix cache under preemption: shared prefixes hit, outputs equal the undisturbed runs', async () => {
  // 40 blocks of 16 tokens. Each sequence is 96 shared + 24 own prompt tokens + 192 generated:
  // 20 blocks, 14 of them its own, so any three that overlap near their ends (6 + 3 x 14 = 48)
  // cannot all stay and preemption recomputes. Long outputs make the overlap certain even when
  // a loaded machine spreads the eight arrivals over a few hundred milliseconds (with 64 tokens
  // on a 48-block cache, CI once saw them finish one after another, and no preemption).
  // No admission headroom: this test is about preemption itself.
  const w = await realWorker(['--kv-cache-memory', String(40 * 16 * 256), '--max-running', '8', '--admit-headroom-tokens', '0',
    '--metrics-listen', '127.0.0.1:0']);
  const g = await gateway([w]);
  const shared = promptIds(99, 96);
  const maxTokens = 192;
  const bodies = Array.from({ length: 8 }, (_, k) => ({ prompt: [...shared, ...promptIds(k, 24)], max_tokens: maxTokens, temperature: 0 }));
  const first = await streamCompletion(g, bodies[0], { chunks: 0 });  // caches the shared prefix
  const results = await Promise.all(bodies.map((b) => streamCompletion(g, b, { chunks: 0 })));
  results.unshift(first);
  for (let k = 0; k < results.length; k++)
    assert.equal(results[k].text, reference(bodies[Math.max(0, k - 1)].prompt, maxTokens), `request ${k}`);
  const hits = await workerMetric(w, 'r1_worker_prefix_cache_hits_total');
  const queries = await workerMetric(w, 'r1_worker_prefix_cache_queries_total');
  const preemptions = await workerMetric(w, 'r1_worker_preemptions_total');
  console.log(`# prefix cache: ${hits} of ${queries} tokens hit, ${preemptions} preemptions`);
  assert.ok(preemptions > 0, 'no preemption: the test did not test it');
  assert.ok(hits >= 8 * 96, `only ${hits} tokens hit`);
  assert.equal((await getLoad(w.port)).kv_blocks_used, 0);
});

test('memory pressure from live work ends with the work: the breaker closes without a restart', async () => {
  const a = await realWorker(['--memory-limit', String(1 << 30)]);
  const b = await realWorker();
  const idle = (await getLoad(a.port)).device_memory_used_bytes;
  // The threshold sits 64 KiB of KV (256 float32 tokens of the tiny model) above a's idle use.
  const threshold = (idle + (64 << 10)) / (1 << 30);
  const g = await gateway([a, b], ['--breaker-memory-threshold', String(threshold)]);
  const la = `worker="127.0.0.1:${a.port}"`;
  assert.equal(await metric(g, 'r1_gateway_breaker_state', la), 0);
  // A long prompt on a (straight to it) holds its KV blocks while it generates.
  const held = generateOn(a.port, { token_ids: { ids: promptIds(7, 2000) }, max_tokens: 400, ignore_eos: true });
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state', la)) === 2, 'breaker open (busy)', 30000);
  const during = (await getLoad(a.port)).device_memory_used_bytes;
  assert.ok(during > idle + (64 << 10), `${during} vs idle ${idle}`);
  for (let i = 0; i < 4; i++)
    assert.equal((await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'x', max_tokens: 2 })).status, 200);
  assert.equal((await held).ids.length, 400);
  await waitFor(async () => (await metric(g, 'r1_gateway_breaker_state', la)) === 0, 'breaker closed', 10000);
  assert.equal((await getLoad(a.port)).device_memory_used_bytes, idle);
  assert.equal(await metric(g, 'r1_gateway_ejections_total', la), 0);  // busy, not broken
});

test('a hung engine thread: the worker turns NOT_SERVING and its streams resume elsewhere', async () => {
  const flag = path.join(tmp, 'hang-engine');
  const a = await realWorker(['--engine-stall-timeout', '1', '--fault-hang-engine-file', flag]);
  const b = await realWorker();
  const g = await gateway([a, b], ['--health-interval-ms', '200', '--health-timeout-ms', '500']);
  const bodies = Array.from({ length: 6 }, (_, k) => ({ prompt: promptIds(k), max_tokens: 96, temperature: 0 }));
  const progress = bodies.map(() => ({ chunks: 0 }));
  const all = bodies.map((body, k) => streamCompletion(g, body, progress[k]));
  await waitFor(async () => progress.every((p) => p.chunks >= 3), 'streams under way', 60000);
  const t0 = Date.now();
  fs.writeFileSync(flag, '');
  await waitFor(async () => {
    const r = await fetch(`${g.url}/metrics`).then((x) => x.text());
    return r.includes(`r1_gateway_worker_healthy{worker="127.0.0.1:${a.port}"} 0`);
  }, 'the hung worker found out', 15000);
  const found = Date.now() - t0;
  const results = await Promise.all(all);
  for (let k = 0; k < bodies.length; k++) {
    assert.equal(results[k].error, false);
    assert.equal(results[k].text, reference(bodies[k].prompt, 96), `stream ${k}`);
  }
  console.log(`# hung engine: gateway saw the worker unhealthy after ${found} ms; every stream completed`);
  assert.ok(found < 5000, `took ${found} ms`);
  fs.rmSync(flag);
});

test('prefix-aware routing over real workers: requests sharing a long prefix go to the worker that caches it', async () => {
  const ws = await Promise.all([0, 1, 2].map(() => realWorker(['--metrics-listen', '127.0.0.1:0'])));
  const g = await gateway(ws);  // --routing prefix-aware, the default
  const shared = promptIds(50, 512);
  for (let k = 0; k < 6; k++) {
    const r = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: [...shared, ...promptIds(60 + k, 8)], max_tokens: 2 });
    assert.equal(r.status, 200);
  }
  const attempts = [];
  for (const w of ws) attempts.push(await metric(g, 'r1_gateway_upstream_attempts_total', `worker="127.0.0.1:${w.port}"`));
  const home = ws[attempts.indexOf(6)];
  assert.ok(home, `the requests spread over the workers: ${attempts}`);
  // 520 tokens: the first request computes all; each later one finds the 32 blocks of 16 of the prefix.
  const hits = await workerMetric(home, 'r1_worker_prefix_cache_hits_total');
  console.log(`# prefix-aware routing: attempts per worker ${attempts.join(', ')}; ${hits} prompt tokens hit on the chosen one`);
  assert.equal(hits, 5 * 512);
});
