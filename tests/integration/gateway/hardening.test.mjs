// Issue 15 against real r1-gateway processes and fake workers: connection slots that an
// unauthenticated client cannot hold, request smuggling, Host rules, absolute-form targets,
// HEAD and Allow, concurrency counted in sequences, the header timeout on kept-alive
// connections, /metrics on its own port, and error bodies that name no internal address.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startFakeWorker, startGateway, waitReady, postJson, rawExchange, curl, sleep, stop, metric, waitFor } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-hard-'));
const keyFile = path.join(tmp, 'keys');
fs.writeFileSync(keyFile, 'sk-good\n');
const started = [];
let w;
async function gateway(args, ws = [w]) {
  const g = await startGateway(ws, args);
  started.push(g);
  return g;
}
test.before(async () => { w = await startFakeWorker(['--name', 'a']); started.push(w); });
test.after(async () => { for (const p of started.reverse()) await stop(p); fs.rmSync(tmp, { recursive: true }); });

const statusLines = (text) => [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));

test('lockout: Connection: close sockets that never close do not hold connection slots', async () => {
  const cap = 40;
  const g = await gateway(['--api-key-file', keyFile, '--max-connections', String(cap)]);
  await waitReady(g);
  // Every slot taken by a client that is refused (401), asks to close, and never closes.
  const attack = 'GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
  const sockets = [];
  const answers = await Promise.all(Array.from({ length: cap }, () => new Promise((resolve) => {
    let text = '';
    const s = net.connect({ port: g.port, host: '127.0.0.1', allowHalfOpen: true }, () => s.write(attack));
    sockets.push(s);
    s.on('data', (d) => { text += d; if (/\r\n\r\n[^]*\}\}/.test(text)) resolve(text); });
    s.on('error', () => resolve(text));
    s.on('end', () => resolve(text));
  })));
  const refused = answers.filter((t) => statusLines(t)[0] === 401).length;
  assert.ok(refused >= cap - 2, `${refused} of ${cap} attack sockets got their 401`);
  // Within --lingering-time (2 s by default) and some slack, the gateway has let go of them all, and an
  // authenticated client is served although the attacker still holds its sockets open.
  await waitFor(async () => (await metric(g, 'r1_gateway_open_connections')) <= 2,
    'lingering connections closed', 5000);
  const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', 'Authorization: Bearer sk-good', `${g.url}/v1/models`]);
  assert.equal(r.stdout, '200');
  for (const s of sockets) s.destroy();
});

test('lingering is bounded also while the client keeps sending', async () => {
  const g = await gateway(['--lingering-time', '1']);
  await waitReady(g);
  const t0 = Date.now();
  const closedAt = await new Promise((resolve) => {
    const s = net.connect({ port: g.port, host: '127.0.0.1', allowHalfOpen: true }, () =>
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    // What a client still sends after the response is read and dropped, for at most 1 s.
    const drip = setInterval(() => { if (!s.destroyed) s.write('x'); }, 100);
    const done = (v) => { clearInterval(drip); clearTimeout(guard); s.destroy(); resolve(v); };
    const guard = setTimeout(() => done(null), 8000);
    s.on('error', () => done(Date.now()));
    s.on('close', () => done(Date.now()));
  });
  assert.ok(closedAt !== null && closedAt - t0 < 3000, `closed after ${closedAt && closedAt - t0} ms`);
});

test('smuggling: a Transfer-Encoding other than chunked is refused with 400 and a close', async () => {
  const keyed = await gateway(['--api-key-file', keyFile]);
  const open = await gateway([]);
  await waitReady(keyed);
  await waitReady(open);
  const smuggled = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  const variants = [
    'Transfer-Encoding: chunked, identity\r\n',
    'Transfer-Encoding: identity\r\n',
    'Transfer-Encoding: xchunked\r\n',
    'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n',
    'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n',
  ];
  for (const g of [keyed, open]) {
    for (const v of variants) {
      for (const target of ['/v1/completions', '/v1/models']) {
        const r = await rawExchange(g.port, `POST ${target} HTTP/1.1\r\nHost: x\r\n${v}\r\n${smuggled}`);
        assert.deepEqual(statusLines(r.text), [400], `${JSON.stringify(v)} on ${target}: ${r.text}`);
        assert.match(r.text, /Connection: close/);
        assert.ok(r.closed, 'the connection is closed');
        assert.doesNotMatch(r.text, /ok\n/, 'the smuggled request is not answered');
      }
    }
  }
  // A well-formed chunked body still works.
  const body = JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 2 });
  const chunked = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  const ok = await rawExchange(open.port, chunked);
  assert.deepEqual(statusLines(ok.text), [200], ok.text);
});

test('a missing, duplicate or invalid Host is refused with 400; HTTP/1.0 needs none', async () => {
  const g = await gateway([]);
  await waitReady(g);
  for (const head of ['GET /healthz HTTP/1.1\r\n', 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n',
    'GET /healthz HTTP/1.1\r\nHost: a b\r\n']) {
    const r = await rawExchange(g.port, `${head}\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.deepEqual(statusLines(r.text), [400], `${JSON.stringify(head)}: ${r.text}`);
    assert.ok(r.closed);
  }
  const old = await rawExchange(g.port, 'GET /healthz HTTP/1.0\r\n\r\n');
  assert.deepEqual(statusLines(old.text), [200]);
});

test('absolute-form targets, HEAD, and 405 with Allow', async () => {
  const g = await gateway(['--api-key-file', keyFile]);
  await waitReady(g);
  const abs = await rawExchange(g.port, 'GET http://gateway.example/healthz HTTP/1.1\r\nHost: gateway.example\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(abs.text), [200], abs.text);
  assert.match(abs.text, /\r\n\r\nok\n$/);
  const absV1 = await rawExchange(g.port, 'GET HTTP://gateway.example:80/v1/models?x=1 HTTP/1.1\r\nHost: gateway.example:80\r\nAuthorization: Bearer sk-good\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(absV1.text), [200], absV1.text);
  // HEAD: GET's status and header, Content-Length included, and no body; the connection stays
  // usable (the next response follows at once).
  const head = await rawExchange(g.port, 'HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(head.text), [200, 200], head.text);
  const [first, second] = head.text.split(/(?=HTTP\/1\.1 )/);
  assert.match(first, /Content-Length: 3\r\n/);
  assert.ok(first.endsWith('\r\n\r\n'), `HEAD response has no body: ${JSON.stringify(first)}`);
  assert.ok(second.endsWith('ok\n'));
  const headV1 = await rawExchange(g.port, 'HEAD /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-good\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(headV1.text), [200]);
  assert.ok(headV1.text.endsWith('\r\n\r\n'));
  // 405 names the methods the route takes.
  const put = await rawExchange(g.port, 'PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(put.text), [405]);
  assert.match(put.text, /\r\nAllow: GET, HEAD\r\n/);
  const get = await fetch(`${g.url}/v1/chat/completions`, { headers: { authorization: 'Bearer sk-good' } });
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
});

test('--max-concurrent-requests counts sequences: n and prompts included', async () => {
  const g = await gateway(['--max-concurrent-requests', '4']);
  await waitReady(g);
  const slow = (n, prompts = 1) => ({ model: 'm', prompt: prompts === 1 ? '@tokens=40 @interval=50' : Array(prompts).fill('@tokens=40 @interval=50'), n });
  const running = postJson(`${g.url}/v1/completions`, slow(3));  // 3 worker streams
  await waitFor(async () => (await metric(g, 'r1_gateway_active_streams')) === 3, 'three streams');
  const two = await postJson(`${g.url}/v1/completions`, slow(2));  // 3 + 2 > 4
  assert.equal(two.status, 429, two.text);
  const batch = await postJson(`${g.url}/v1/completions`, slow(1, 2));  // two prompts: 3 + 2 > 4
  assert.equal(batch.status, 429, batch.text);
  const one = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=2', n: 1 });
  assert.equal(one.status, 200, one.text);
  const huge = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: 'x', n: 5 });
  assert.equal(huge.status, 400, huge.text);
  assert.equal(huge.json.error.param, 'n');
  assert.equal((await running).status, 200);
  // Once the streams are gone the sequences are free again.
  await waitFor(async () => (await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=1', n: 4 })).status === 200,
    'four sequences admitted');
});

test('the header timeout applies to every request of a kept-alive connection', async () => {
  const g = await gateway(['--header-timeout', '1', '--idle-timeout', '10']);
  await waitReady(g);
  const result = await new Promise((resolve) => {
    let text = '', drip = null, firstByteAt = 0;
    const s = net.connect({ port: g.port, host: '127.0.0.1', allowHalfOpen: true }, () =>
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    const next = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'y'.repeat(200) + '\r\n\r\n';
    s.on('data', (d) => {
      text += d;
      if (drip || !text.includes('ok\n')) return;
      // Idle for longer than the header timeout (that is allowed: the idle timeout is 10 s),
      // then dribble the next request's header one byte every 100 ms.
      setTimeout(() => {
        let i = 0;
        firstByteAt = Date.now();
        drip = setInterval(() => { if (i < next.length && !s.destroyed) s.write(next[i++]); }, 100);
      }, 1500);
      drip = true;
    });
    const done = () => { clearInterval(drip); resolve({ text, after: Date.now() - firstByteAt }); };
    s.on('end', done);
    s.on('error', done);
  });
  assert.deepEqual(statusLines(result.text), [200], result.text);
  assert.ok(result.after >= 800 && result.after < 3000,
    `closed ${result.after} ms after the header's first byte (header timeout 1 s, idle 10 s)`);
});

test('--metrics-listen serves /metrics on its own port, and the API port no longer does', async () => {
  const g = await gateway(['--metrics-listen', '127.0.0.1:0']);
  const m = g.stdout().match(/METRICS (\d+)/);
  assert.ok(m, g.stdout());
  const metricsUrl = `http://127.0.0.1:${m[1]}/metrics`;
  await waitFor(async () => /r1_gateway_worker_healthy\{.*\} 1/.test(await (await fetch(metricsUrl)).text()), 'healthy worker');
  const text = await (await fetch(metricsUrl)).text();
  assert.match(text, /r1_gateway_open_connections \d+/);
  assert.equal((await fetch(`${g.url}/metrics`)).status, 404);
  assert.equal((await fetch(`${g.url}/healthz`)).status, 200);
});

test('a worker refusing the gateway\'s credentials gives 502, not the client\'s 401', async () => {
  const g = await gateway([]);
  await waitReady(g);
  for (const code of [16, 7]) {  // UNAUTHENTICATED, PERMISSION_DENIED
    const r = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: `@fail_before=${code}` });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.type, 'server_error');
  }
});

test('error bodies never name internal addresses', async () => {
  const doomed = await startFakeWorker(['--name', 'd']);
  started.push(doomed);
  // Health polls far apart: the gateway still thinks the worker is up when it is gone.
  const g = await gateway(['--health-interval-ms', '600000', '--max-attempts', '1'], [doomed]);
  await waitFor(async () => (await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: '@tokens=1' })).status === 200, 'served');
  await stop(doomed, 'SIGKILL');
  const r = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: 'x' });
  assert.equal(r.status, 503, r.text);
  assert.doesNotMatch(r.text, /127\.0\.0\.1|ipv4:|localhost|:\d{4,5}\b/, r.text);
  assert.match(r.json.error.message, /<address>|worker/);
});
