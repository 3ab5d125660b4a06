// The connection-slot lockout probe of issue 15: opens many connections that each send an
// unauthenticated request with "Connection: close" and then never close, while an
// authenticated client asks every 200 ms. Prints what the attack sockets got, how the
// authenticated client fared during and after the attack, and (from r1_gateway_open_connections)
// how long the gateway held the attack's connections. Needs a gateway run with --api-key-file.
//
//   node bench/lockout_probe.mjs --target http://127.0.0.1:8080 --api-key KEY \
//     [--sockets 10000] [--open-seconds 2] [--observe-seconds 15] [--metrics URL]
// --metrics defaults to TARGET/metrics (give the --metrics-listen address when the gateway has
// one). Raise `ulimit -n` above --sockets for both this process and the gateway.
import http from 'node:http';
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const target = new URL(args.target ?? 'http://127.0.0.1:8080');
const apiKey = args['api-key'];
const sockets = Number(args.sockets ?? 10000);
const openSeconds = Number(args['open-seconds'] ?? 2);
const observeSeconds = Number(args['observe-seconds'] ?? 15);
const metricsUrl = args.metrics ?? `${target.origin}/metrics`;
if (!apiKey) { console.error('lockout_probe: --api-key is required'); process.exit(2); }

const t0 = Date.now();
const now = () => (Date.now() - t0) / 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const attack = `GET /v1/models HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`;
const held = [];
const answers = { 401: 0, 503: 0, other: 0, none: 0, error: 0 };

function openOne() {
  return new Promise((resolve) => {
    let text = '', done = false;
    const finish = (kind) => {
      if (done) return;
      done = true;
      answers[kind]++;
      resolve();
    };
    const s = net.connect({ host: target.hostname, port: Number(target.port), allowHalfOpen: true }, () => s.write(attack));
    held.push(s);
    s.on('data', (d) => {
      text += d;
      const m = text.match(/^HTTP\/1\.1 (\d{3})/);
      if (m) finish(m[1] === '401' || m[1] === '503' ? m[1] : 'other');
    });
    s.on('error', () => finish(text ? 'other' : 'error'));
    setTimeout(() => finish('none'), 10000);
  });
}

// One authenticated request on a fresh connection: resolves {t, status, ms}.
function probe() {
  const start = Date.now();
  return new Promise((resolve) => {
    const req = http.request({ host: target.hostname, port: target.port, path: '/v1/models', agent: false,
      headers: { authorization: `Bearer ${apiKey}` }, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ t: (start - t0) / 1000, status: res.statusCode, ms: Date.now() - start }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ t: (start - t0) / 1000, status: e.message === 'timeout' ? 'timeout' : 'error', ms: Date.now() - start }));
    req.end();
  });
}

async function openConnections() {
  const text = await fetch(metricsUrl).then((r) => r.text()).catch(() => '');
  const m = text.match(/^r1_gateway_open_connections (\S+)$/m);
  return m ? Number(m[1]) : null;
}

const probes = [];
const gauge = [];
let observing = true;
const prober = (async () => {
  while (observing) {
    probes.push(await probe());
    await sleep(200);
  }
})();
const sampler = (async () => {
  while (observing) {
    gauge.push({ t: now(), open: await openConnections() });
    await sleep(250);
  }
})();

// The attack: `sockets` connections spread evenly over --open-seconds.
const opened = [];
const batch = 50;
for (let i = 0; i < sockets; i += batch) {
  for (let j = i; j < Math.min(sockets, i + batch); j++) opened.push(openOne());
  await sleep((openSeconds * 1000 * batch) / sockets);
}
const openedAt = now();
await Promise.all(opened);
const answeredAt = now();
await sleep(Math.max(0, observeSeconds * 1000 - (Date.now() - t0)));
observing = false;
await Promise.all([prober, sampler]);

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const p99 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)] : NaN; };
const summarize = (list) => {
  const by = {};
  for (const p of list) by[p.status] = (by[p.status] ?? 0) + 1;
  const ok = list.filter((p) => p.status === 200).map((p) => p.ms);
  return `${list.length} probes: ${Object.entries(by).map(([k, v]) => `${k} x${v}`).join(', ') || 'none'}` +
    (ok.length ? `; 200s took median ${median(ok)} ms, p99 ${p99(ok)} ms` : '');
};
const during = probes.filter((p) => p.t <= answeredAt);
const after = probes.filter((p) => p.t > answeredAt);
const firstOkAfter = after.find((p) => p.status === 200);
const known = gauge.filter((g) => g.open !== null);
const peak = known.reduce((a, g) => (g.open > a.open ? g : a), { open: -1, t: 0 });
const drained = known.find((g) => g.t > peak.t && g.open <= 2);

console.log(`target ${target.origin}, ${sockets} attack sockets opened in ${openedAt.toFixed(2)} s, all answered or given up by ${answeredAt.toFixed(2)} s`);
console.log(`attack sockets got: 401 x${answers[401]}, 503 x${answers[503]}, other x${answers.other}, no answer x${answers.none}, connect error x${answers.error}`);
console.log(`authenticated client while the attack was opening (0-${answeredAt.toFixed(1)} s): ${summarize(during)}`);
console.log(`authenticated client after (${answeredAt.toFixed(1)}-${observeSeconds} s), attack sockets still open on the client: ${summarize(after)}`);
console.log(`first 200 after the attack: ${firstOkAfter ? `${firstOkAfter.t.toFixed(2)} s` : 'never'}`);
if (known.length) {
  console.log(`gateway open connections: peak ${peak.open} at ${peak.t.toFixed(2)} s, ` +
    (drained ? `down to ${drained.open} at ${drained.t.toFixed(2)} s` : `still ${known.at(-1).open} at ${known.at(-1).t.toFixed(2)} s`));
} else {
  console.log('gateway open connections: not exposed (no r1_gateway_open_connections at --metrics)');
}
for (const s of held) s.destroy();
