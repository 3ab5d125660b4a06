// The slow-reader memory probe of issue 15: opens --clients connections that each POST a
// streamed request with `n` choices and then never read a byte, holds them for
// --hold-seconds, then reads what each got (to the end, or to the gateway's reset) and closes
// them. Prints the gateway's resident memory (VmRSS of --pid, from /proc) idle before, at its
// peak while the clients held, and after they were gone, with the differences to idle.
//
//   node bench/slow_reader_probe.mjs --pid GATEWAY_PID --target http://127.0.0.1:8080 \
//     [--clients 10] [--n 64] [--max-tokens 2048] [--prompt TEXT] [--endpoint completions|chat]
//     [--hold-seconds 40] [--settle-seconds 5] [--api-key KEY] [--model ID]
// --model defaults to the first model the gateway lists at /v1/models.
// --prompt defaults to "Once upon a time"; against tests/gateway's fake worker, a prompt such
// as "@tokens=100000" makes every choice that long. The requests set ignore_eos, so a real
// worker generates max_tokens for every choice.
import fs from 'node:fs';
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const known = ['pid', 'target', 'clients', 'n', 'max-tokens', 'prompt', 'endpoint', 'hold-seconds',
  'settle-seconds', 'api-key', 'model'];
for (const k of Object.keys(args)) {
  if (!known.includes(k)) { console.error(`slow_reader_probe: unknown flag --${k}`); process.exit(2); }
  if (args[k] === undefined) { console.error(`slow_reader_probe: --${k} needs a value`); process.exit(2); }
}
const pid = Number(args.pid);
const target = new URL(args.target ?? 'http://127.0.0.1:8080');
const clients = Number(args.clients ?? 10);
const n = Number(args.n ?? 64);
const maxTokens = Number(args['max-tokens'] ?? 2048);
const prompt = args.prompt ?? 'Once upon a time';
const endpoint = args.endpoint ?? 'completions';
const holdSeconds = Number(args['hold-seconds'] ?? 40);
const settleSeconds = Number(args['settle-seconds'] ?? 5);
if (!Number.isInteger(pid) || pid <= 0) { console.error('slow_reader_probe: --pid (the gateway\'s) is required'); process.exit(2); }
if (!['completions', 'chat'].includes(endpoint)) { console.error('slow_reader_probe: --endpoint is completions or chat'); process.exit(2); }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (kb) => (kb / 1024).toFixed(1);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

// VmRSS of the gateway, in KiB.
function rssKb() {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}
async function rssMedian(samples = 10) {
  const xs = [];
  for (let i = 0; i < samples; ++i) { xs.push(rssKb()); await sleep(100); }
  return median(xs);
}

async function servedModel() {
  if (args.model) return args.model;
  const headers = args['api-key'] ? { Authorization: `Bearer ${args['api-key']}` } : {};
  const r = await fetch(new URL('v1/models', target.href.replace(/\/?$/, '/')), { headers });
  const list = r.ok ? await r.json() : null;
  const id = list?.data?.[0]?.id;
  if (!id) { console.error(`slow_reader_probe: ${target.href} lists no model at /v1/models (HTTP ${r.status}); give --model`); process.exit(2); }
  return id;
}
const model = await servedModel();
const body = JSON.stringify(endpoint === 'chat'
  ? { model, messages: [{ role: 'user', content: prompt }], n, max_tokens: maxTokens,
      stream: true, ignore_eos: true }
  : { model, prompt, n, max_tokens: maxTokens, stream: true, ignore_eos: true });
const path = endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
const request = `POST ${target.pathname.replace(/\/$/, '')}${path} HTTP/1.1\r\nHost: ${target.host}\r\n` +
  'Content-Type: application/json\r\n' +
  (args['api-key'] ? `Authorization: Bearer ${args['api-key']}\r\n` : '') +
  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

// A client that sends its request and never reads; read() later takes what it got.
function openClient() {
  const c = { bytes: 0, text: '', ended: null };
  c.socket = net.connect({ host: target.hostname, port: Number(target.port) }, () => c.socket.write(request));
  c.socket.pause();
  c.socket.on('error', (e) => { c.ended ??= e.code ?? 'error'; });
  c.socket.on('end', () => { c.ended ??= 'end'; });
  return c;
}

// Reads the rest of a held client for up to `ms`.
function drain(c, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(), ms);
    const done = () => { clearTimeout(t); resolve(); };
    c.socket.on('data', (d) => { c.bytes += d.length; c.text = (c.text + d.toString('latin1')).slice(-64); });
    c.socket.on('close', done);
    c.socket.resume();
  });
}

const idle = await rssMedian();
console.log(`gateway pid ${pid}: idle RSS ${mb(idle)} MB`);
console.log(`${clients} clients, n=${n}, max_tokens=${maxTokens}, ${endpoint}, never reading for ${holdSeconds} s`);
const held = Array.from({ length: clients }, openClient);
const start = Date.now();
let peak = idle, peakAt = 0;
while (Date.now() - start < holdSeconds * 1000) {
  const r = rssKb();
  if (r > peak) { peak = r; peakAt = (Date.now() - start) / 1000; }
  await sleep(100);
}
const during = rssKb();
console.log(`peak RSS while held ${mb(peak)} MB (+${mb(peak - idle)} MB, at ${peakAt.toFixed(1)} s); ` +
  `at the end of the hold ${mb(during)} MB (+${mb(during - idle)} MB)`);
await Promise.all(held.map((c) => drain(c, 5000)));
for (const [i, c] of held.entries()) {
  const outcome = c.text.includes('data: [DONE]') ? 'complete ([DONE])'
    : c.ended === 'ECONNRESET' ? 'reset by the gateway'
    : c.ended ? `closed (${c.ended}) before [DONE]` : 'still open';
  console.log(`  client ${i}: read ${c.bytes} bytes afterwards, ${outcome}`);
}
for (const c of held) c.socket.destroy();
await sleep(settleSeconds * 1000);
const after = await rssMedian();
console.log(`after: RSS ${mb(after)} MB (+${mb(after - idle)} MB), ${settleSeconds} s after the clients left`);
console.log(`RESULT idle_mb=${mb(idle)} peak_mb=${mb(peak)} after_mb=${mb(after)} ` +
  `peak_delta_mb=${mb(peak - idle)} after_delta_mb=${mb(after - idle)}`);
