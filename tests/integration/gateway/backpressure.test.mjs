// Output back-pressure (issue 15): a client that stops reading makes the gateway stop reading
// its worker streams (the worker's writes then wait: the fake worker prints BLOCKED), a
// stream that stays stalled for --write-timeout is reset and cancelled on the worker (the
// fake worker prints CANCELLED; a real worker counts a cancelled request and frees its
// sequence), a client that pauses and then reads gets every byte, a client that reads slowly
// all along is never cut, and other clients are served meanwhile. The stalled clients are tests/integration/gateway/stalled_client.py,
// which shrinks its receive buffer so that the kernel absorbs little.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeWorker, startGateway, startProcess, waitReady, waitFor, readStream, sseEvents, metric, stop, sleep } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const started = [];
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); });

// A fake worker named `name` behind a gateway started with `gatewayArgs`, ready: {w, g}.
async function fakeStack(name, gatewayArgs) {
  const w = await startFakeWorker(['--name', name]);
  started.push(w);
  const g = await startGateway([w], gatewayArgs);
  started.push(g);
  await waitReady(g);
  return { w, g };
}

function request(port, body) {
  const b = JSON.stringify(body);
  return `POST /v1/${body.messages ? 'chat/' : ''}completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
}

// Runs stalled_client.py; resolves {lines, stdout (Buffer), code}; `onLine` sees each line.
function stalledClient(port, body, args) {
  return new Promise((resolve) => {
    const p = spawn('python3', [path.join(here, 'stalled_client.py'), String(port), ...args],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const chunks = [];
    p.stdout.on('data', (d) => chunks.push(d));
    p.on('exit', (code) => resolve({ code, stdout: Buffer.concat(chunks) }));
    p.stdin.end(request(port, body));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function rssMb(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]) / 1024;
}

// The fake worker's flow-control lines for one request id prefix: {blocked: [k...], cancelled: [k...]}.
function workerLines(w, id) {
  const out = { blocked: [], cancelled: [], done: [] };
  for (const line of w.stdout().split('\n')) {
    const m = line.match(/^(BLOCKED|CANCELLED|DONE) (\S+) (?:at )?(\d+)$/);
    if (m && m[2].startsWith(id)) out[m[1].toLowerCase()].push(Number(m[3]));
  }
  return out;
}

// The response's SSE events of a chunked HTTP/1.1 response, de-chunked.
function events(raw) {
  const text = raw.toString('latin1');
  const head = text.indexOf('\r\n\r\n');
  assert.match(text.slice(0, head), /^HTTP\/1\.1 200 /);
  let body = '', i = head + 4;
  for (;;) {
    const eol = text.indexOf('\r\n', i);
    const size = parseInt(text.slice(i, eol), 16);
    if (size === 0) break;
    body += text.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
  return sseEvents(body);
}

test('a client that never reads: the worker is held, the stream is reset at --write-timeout and cancelled on the worker; others are served', async () => {
  const { w, g } = await fakeStack('a', ['--write-timeout', '1', '--max-buffered-output-bytes', '16384']);
  const rssIdle = rssMb(g.proc.pid);
  const before499 = await metric(g, 'r1_gateway_requests_total', 'code="499"');

  const t0 = Date.now();
  const stalled = stalledClient(g.port, { model: 'm', prompt: '@tokens=1000000', n: 2, stream: true },
    ['--stall', '0', '--then', 'hold', '--limit', '30']);
  // While it stalls, another client is served in full.
  await waitFor(() => workerLines(w, 'cmpl-').blocked.length === 2, 'both worker streams held by flow control', 20000);
  const other = await readStream(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=300', n: 2, stream: true }, 'stop');
  assert.ok(other.ok, 'the other client got its whole stream');
  const peakRss = rssMb(g.proc.pid);

  const { stdout, code } = await stalled;
  assert.equal(code, 0, `the stalled client's connection was not cut: ${stdout}`);
  const cutAt = Number(stdout.toString().match(/CUT ([\d.]+)/)[1]);
  // Both choices were cancelled on the worker, each having written far fewer than its million
  // tokens: once held, a stream's writes stayed held until the cancel.
  await waitFor(() => workerLines(w, 'cmpl-').cancelled.length === 2, 'the worker to see both cancels');
  const lines = workerLines(w, 'cmpl-');
  for (const k of lines.cancelled) assert.ok(k < 1000000 / 10, `a stream wrote ${k} tokens`);
  assert.equal(await metric(g, 'r1_gateway_requests_total', 'code="499"'), before499 + 1);
  assert.match(g.stderr(), /took no byte for 1 s \(--write-timeout\) with \d+ bytes queued: connection reset, its request cancelled on the workers/);
  // The held streams cost the gateway little memory: without back-pressure it buffers what
  // the worker sends (a million tokens a choice, over 100 MB a second).
  assert.ok(peakRss - rssIdle < 40, `gateway RSS grew by ${(peakRss - rssIdle).toFixed(1)} MB`);
  assert.ok(cutAt < (Date.now() - t0) / 1000 + 1);
});

test('a client that pauses and then reads gets every byte; the pause held the worker', async () => {
  const { w, g } = await fakeStack('b', ['--write-timeout', '5', '--max-buffered-output-bytes', '4096']);
  const tokens = 20000;
  const { stdout, code } = await stalledClient(g.port,
    { model: 'm', prompt: `@tokens=${tokens}`, n: 3, stream: true }, ['--stall', '2', '--then', 'read']);
  assert.equal(code, 0);
  const evs = events(stdout.subarray(stdout.indexOf('HTTP/1.1')));
  assert.equal(evs.at(-1), '[DONE]');
  // The reference: the fake worker's script, token i of worker "b" is "b-i ".
  const want = Array.from({ length: tokens }, (_, i) => `b-${i} `).join('');
  const text = [[], [], []];
  const finish = [];
  for (const e of evs.slice(0, -1)) {
    const c = JSON.parse(e).choices[0];
    text[c.index].push(c.text);
    if (c.finish_reason) finish[c.index] = c.finish_reason;
  }
  for (let i = 0; i < 3; ++i) {
    const got = text[i].join('');
    let at = 0;
    while (at < want.length && got[at] === want[at]) ++at;
    assert.ok(got === want, `choice ${i} differs at byte ${at} of ${want.length} (got ${got.length}): ` +
      `${JSON.stringify(got.slice(Math.max(0, at - 40), at + 40))} vs ${JSON.stringify(want.slice(Math.max(0, at - 40), at + 40))}`);
    assert.equal(finish[i], 'stop');
  }
  // The worker's writes waited while the client did not read, and every stream completed.
  const lines = workerLines(w, 'cmpl-');
  assert.equal(lines.blocked.length, 3, 'every stream was held by flow control during the pause');
  assert.deepEqual(lines.done, [tokens, tokens, tokens]);
  assert.equal(lines.cancelled.length, 0);
});

test('a client that reads slowly all along is never cut, though a write waits longer than --write-timeout', async () => {
  // The kernel takes megabytes of a loopback connection's output, and once that is full a
  // write completes only after about a third of it has drained: at the client's 700 kB a
  // second, a write waits about two seconds, twice --write-timeout, while the client
  // acknowledges bytes all along. The client is reading: the stream must not be reset.
  const { w, g } = await fakeStack('c', ['--write-timeout', '1', '--max-buffered-output-bytes', '4096']);
  const tokens = 10000;  // three choices: about 6 MB of events, made faster than the client reads
  const t0 = Date.now();
  const { stdout, code } = await stalledClient(g.port, { model: 'm', prompt: `@tokens=${tokens}`, n: 3, stream: true },
    ['--stall', '0', '--then', 'trickle', '--rate', '700000', '--rcvbuf', '65536']);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(code, 0);
  assert.doesNotMatch(g.stderr(), /took no byte/);
  const evs = events(stdout.subarray(stdout.indexOf('HTTP/1.1')));
  assert.equal(evs.at(-1), '[DONE]');
  const text = [[], [], []];
  for (const e of evs.slice(0, -1)) text[JSON.parse(e).choices[0].index].push(JSON.parse(e).choices[0].text);
  const want = Array.from({ length: tokens }, (_, i) => `c-${i} `).join('');
  for (let i = 0; i < 3; ++i) assert.ok(text[i].join('') === want, `choice ${i} is not the worker's script`);
  assert.ok(seconds > 3, `the slow read took ${seconds} s, not many write timeouts`);
  assert.equal(workerLines(w, 'cmpl-').cancelled.length, 0);
});

test('a real worker frees the sequences of a stream reset at --write-timeout', { skip: !process.env.R1_WORKER && 'needs r1-worker' }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-bp-'));
  const model = path.join(tmp, 'model');
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--out', model, '--tokenizer',
    path.join(process.env.R1_SOURCE_DIR, '.cache/tokenizer/tokenizer.json')], { stdio: 'ignore' });
  try {
    const metricsPort = await freePort();
    const w = await startProcess(process.env.R1_WORKER,
      ['--model', model, '--listen', '127.0.0.1:0', '--kv-cache-memory', String(32 << 20),
       '--metrics-listen', `127.0.0.1:${metricsPort}`, '--log-level', 'warning'], /serving .* on [^\s]*:(\d+)/);
    started.push(w);
    const workerMetric = async (name, labels = '') => metric({ url: `http://127.0.0.1:${metricsPort}` }, name, labels);
    const g = await startGateway([w], ['--write-timeout', '1', '--max-buffered-output-bytes', '4096']);
    started.push(g);
    await waitReady(g);
    const cancelledBefore = await workerMetric('r1_worker_requests_total', 'finish_reason="cancelled"');
    // Twenty log-probabilities a token make each chunk a few kilobytes, so that the tiny model
    // fills the socket buffers in seconds.
    const { stdout, code } = await stalledClient(g.port,
      { model: path.basename(model), messages: [{ role: 'user', content: 'Once upon a time' }], n: 4, max_tokens: 30000,
        ignore_eos: true, logprobs: true, top_logprobs: 20, stream: true },
      ['--stall', '0', '--then', 'hold', '--limit', '60']);
    assert.equal(code, 0, `not cut: ${stdout}`);
    // The worker counts the four sequences as cancelled and frees them (and their KV blocks)
    // long before their 30,000 tokens.
    await waitFor(async () => (await workerMetric('r1_worker_requests_total', 'finish_reason="cancelled"')) === cancelledBefore + 4,
      'the worker to count 4 cancelled requests');
    await waitFor(async () => (await workerMetric('r1_worker_running_sequences')) === 0 &&
      (await workerMetric('r1_worker_kv_cache_usage_ratio')) === 0, 'the worker to free the sequences');
    assert.equal(await workerMetric('r1_worker_requests_total', 'finish_reason="length"'), 0);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
