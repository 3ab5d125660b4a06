// Shared helpers for the gateway process tests: start fake or real workers and the gateway on
// free loopback ports, poll until ready, talk gRPC to workers, run curl.
import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';

export const env = {
  gateway: process.env.R1_GATEWAY,
  fakeWorker: process.env.R1_FAKE_WORKER,
  nodeDir: process.env.R1_NODE_DIR,
  sourceDir: process.env.R1_SOURCE_DIR,
};
export const nodeRequire = createRequire(path.join(env.nodeDir, 'package.json'));

const procs = new Set();
process.on('exit', () => { for (const p of procs) { try { p.kill('SIGKILL'); } catch {} } });

// Spawns `bin` and resolves once stdout prints `re` (whose group 1 is the port).
export function startProcess(bin, args, re, { timeoutMs = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(proc);
    let out = '', err = '';
    const timer = setTimeout(() => reject(new Error(`${bin} did not start: ${err}`)), timeoutMs);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(re);
      if (m) { clearTimeout(timer); resolve({ proc, port: Number(m[1]), stdout: () => out, stderr: () => err }); }
    });
    proc.stderr.on('data', (d) => { err += d; if (err.length > 1e6) err = err.slice(-5e5); });
    proc.on('exit', (code) => { procs.delete(proc); clearTimeout(timer); reject(new Error(`${bin} exited ${code}: ${err}`)); });
  });
}

// Fake workers serve the model 'm' unless args give another --model-id (the gateway answers
// 404 for a model no worker serves).
export function startFakeWorker(args = []) {
  const model = args.includes('--model-id') ? [] : ['--model-id', 'm'];
  return startProcess(env.fakeWorker, ['--listen', '127.0.0.1:0', ...model, ...args], /PORT (\d+)/);
}

// A real r1-worker on `model` (a small KV cache, a short drain, quiet logs).
export function startRealWorker(model, args = [], port = 0) {
  return startProcess(process.env.R1_WORKER,
    ['--model', model, '--listen', `127.0.0.1:${port}`, '--kv-cache-memory', String(32 << 20),
     '--drain-timeout', '1', '--log-level', 'warning', ...args], /serving .* on [^\s]*:(\d+)/);
}

export async function startGateway(workers, args = []) {
  const list = workers.map((w) => `127.0.0.1:${w.port}`).join(',');
  const g = await startProcess(env.gateway,
    ['--listen', '127.0.0.1:0', '--workers', list, '--health-interval-ms', '100', ...args],
    /LISTENING (\d+)/);
  g.url = `http://127.0.0.1:${g.port}`;
  return g;
}

export function stop(p, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) return resolve();
    p.proc.once('exit', () => resolve());
    p.proc.kill(signal);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(fn, what, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export async function waitReady(g, n = 1) {
  await waitFor(async () => {
    const r = await fetch(`${g.url}/metrics`).catch(() => null);
    if (!r || r.status !== 200) return false;
    const text = await r.text();
    return (text.match(/^r1_gateway_worker_healthy\{.*\} 1$/mg) || []).length >= n;
  }, `${n} healthy worker(s)`);
}

// Real workers on `model` and gateways, remembered in `started` for the tests' `after` to stop;
// `workerArgs` go to every worker.
export function processes(model, workerArgs = []) {
  const started = [];
  return {
    started,
    async worker(args = [], port = 0) {
      const w = await startRealWorker(model, [...workerArgs, ...args], port);
      started.push(w);
      return w;
    },
    async gateway(ws, args = []) {
      const g = await startGateway(ws, args);
      started.push(g);
      await waitReady(g, ws.length);
      return g;
    },
  };
}

// The value of a metric line (labels given as a substring), or 0.
export async function metric(g, name, labels = '') {
  const text = await (await fetch(`${g.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith('{') || rest.startsWith(' '))) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.split(' ').pop());
  }
  return sum;
}

let inference = null;
// A client of a worker's Inference service through @grpc/grpc-js.
function inferenceClient(port) {
  const grpc = nodeRequire('@grpc/grpc-js');
  if (!inference) {
    const loader = nodeRequire('@grpc/proto-loader');
    const def = loader.loadSync(path.join(env.sourceDir, 'proto/r1serve/v1/inference.proto'),
      { keepCase: true, longs: Number, defaults: true });
    inference = grpc.loadPackageDefinition(def).r1serve.v1.Inference;
  }
  return new inference(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

// Inference.Generate straight on a worker; resolves the ids and the last message.
export function generateOn(port, request) {
  const client = inferenceClient(port);
  return new Promise((resolve, reject) => {
    const ids = [];
    let last = null;
    const call = client.Generate(request);
    call.on('data', (m) => { ids.push(...m.token_ids); last = m; });
    call.on('end', () => { client.close(); resolve({ ids, last }); });
    call.on('error', (e) => { client.close(); reject(e); });
  });
}

// Inference.GetLoad on a worker through @grpc/grpc-js.
export function getLoad(port) {
  const client = inferenceClient(port);
  return new Promise((resolve, reject) => {
    client.GetLoad({}, { deadline: Date.now() + 3000 }, (err, r) => {
      client.close();
      err ? reject(err) : resolve(r);
    });
  });
}

// Opens a raw TCP connection, writes `bytes`, and collects what comes back until the server
// closes or `waitMs` pass. The client never closes its side first (allowHalfOpen), as an
// attacker holding connections would not. Resolves {text, closed}.
export function rawExchange(port, bytes, { waitMs = 3000 } = {}) {
  return new Promise((resolve) => {
    let text = '';
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.write(bytes));
    const done = (closed) => { clearTimeout(t); s.destroy(); resolve({ text, closed }); };
    const t = setTimeout(() => done(false), waitMs);
    s.on('data', (d) => { text += d.toString('latin1'); });
    s.on('end', () => done(true));
    s.on('error', () => done(true));
  });
}

// Runs curl; resolves {code, stdout}.
export function curl(args) {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', ...args], { maxBuffer: 1 << 24, encoding: 'latin1' }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: r.status, headers: r.headers, text, json };
}

// Reads an SSE response body into its `data:` payloads.
export function sseEvents(text) {
  return text.split('\n\n').filter((b) => b.length).map((b) => {
    if (!b.startsWith('data: ')) throw new Error(`bad SSE block: ${JSON.stringify(b)}`);
    return b.slice(6);
  });
}

// POSTs a streamed request and reads it to the end; resolves the arrival time of the first
// bytes, whether the stream ended with `finish` as its finish reason, and the raw text.
export async function readStream(url, body, finish) {
  const r = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status !== 200) throw new Error(`status ${r.status}`);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = '', firstAt = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (firstAt === null) firstAt = Date.now();
    text += dec.decode(value, { stream: true });
  }
  const events = sseEvents(text);
  return { firstAt, ok: events.at(-2).includes(`"finish_reason":"${finish}"`), text };
}
