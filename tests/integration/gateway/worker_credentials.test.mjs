// Worker credentials (issue 15) with real r1-worker processes serving the tiny model and
// certificates made here with openssl (tools/make-certs.sh): a worker on mTLS refuses clients
// without a certificate of its CA, a worker with a token refuses calls without it, and the
// gateway with the matching flags is served while one without them is not (its 503 naming no
// address). Direct calls are made with @grpc/grpc-js, as an outsider would.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { env, nodeRequire, startProcess, startGateway, postJson, stop, waitFor } from './harness.mjs';

const grpc = nodeRequire('@grpc/grpc-js');
const loader = nodeRequire('@grpc/proto-loader');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-creds-'));
const model = path.join(tmp, 'model');
const good = path.join(tmp, 'certs');
const rogue = path.join(tmp, 'rogue');
const tokenFile = path.join(tmp, 'tokens');
const wrongTokenFile = path.join(tmp, 'wrong-token');
const started = [];
const pem = (dir, name) => fs.readFileSync(path.join(dir, name));

const protoOpts = { keepCase: true, longs: Number, enums: String, defaults: true };
const Inference = grpc.loadPackageDefinition(loader.loadSync(
  path.join(env.sourceDir, 'proto/r1serve/v1/inference.proto'), protoOpts)).r1serve.v1.Inference;
const Health = grpc.loadPackageDefinition(loader.loadSync(
  path.join(env.sourceDir, 'proto/grpc/health/v1/health.proto'), protoOpts)).grpc.health.v1.Health;

async function worker(args) {
  const w = await startProcess(process.env.R1_WORKER,
    ['--model', model, '--listen', '127.0.0.1:0', '--kv-cache-memory', String(32 << 20),
     '--log-level', 'warning', ...args], /serving .* on [^\s]*:(\d+)/);
  started.push(w);
  return w;
}
async function gateway(w, args) {
  const g = await startGateway([w], args);
  started.push(g);
  return g;
}

// One direct Generate call; resolves {code, messages} (code 0: the stream ended well).
function generate(port, creds, metadata = {}) {
  const client = new Inference(`127.0.0.1:${port}`, creds);
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    let messages = 0;
    const call = client.Generate({ text: 'Hello', max_tokens: 3, ignore_eos: true }, md,
      { deadline: Date.now() + 10000 });
    call.on('data', () => { messages++; });
    call.on('error', (e) => { client.close(); resolve({ code: e.code, messages, details: e.details }); });
    call.on('end', () => { client.close(); resolve({ code: 0, messages }); });
  });
}
function unary(Service, method, port, creds, metadata = {}) {
  const client = new Service(`127.0.0.1:${port}`, creds);
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => client[method]({}, md, { deadline: Date.now() + 10000 }, (e, r) => {
    client.close();
    resolve(e ? { code: e.code } : { code: 0, reply: r });
  }));
}

test.before(() => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--out', model, '--tokenizer',
    path.join(env.sourceDir, '.cache/tokenizer/tokenizer.json')], { stdio: 'ignore' });
  const makeCerts = path.join(env.sourceDir, 'tools/make-certs.sh');
  execFileSync(makeCerts, [good], { stdio: 'ignore' });
  execFileSync(makeCerts, [rogue], { stdio: 'ignore' });  // another CA, same names
  fs.writeFileSync(tokenFile, '# accepted tokens\nworker-token-new\nworker-token-old\n');
  fs.writeFileSync(wrongTokenFile, 'worker-token-guess\n');
});
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); fs.rmSync(tmp, { recursive: true }); });

const completion = { model: 'model', prompt: 'Hello', max_tokens: 3 };

test('mTLS: only a client with a certificate of the workers\' CA reaches the worker', async () => {
  const w = await worker(['--tls-cert', path.join(good, 'worker.crt'), '--tls-key', path.join(good, 'worker.key'),
    '--tls-client-ca', path.join(good, 'ca.crt')]);
  assert.match(w.stdout(), /\(mTLS\)/);
  const ca = pem(good, 'ca.crt');
  const refused = [
    ['plaintext', grpc.credentials.createInsecure()],
    ['TLS without a client certificate', grpc.credentials.createSsl(ca)],
    ['a client certificate of another CA', grpc.credentials.createSsl(ca, pem(rogue, 'gateway.key'), pem(rogue, 'gateway.crt'))],
  ];
  for (const [what, creds] of refused) {
    for (let i = 0; i < 5; i++) {
      const r = await generate(w.port, creds);
      assert.notEqual(r.code, 0, `${what}: a direct Generate call succeeded`);
      assert.equal(r.messages, 0, what);
    }
  }
  const ok = await generate(w.port, grpc.credentials.createSsl(ca, pem(good, 'gateway.key'), pem(good, 'gateway.crt')));
  assert.equal(ok.code, 0, ok.details);
  assert.ok(ok.messages >= 1);

  // The gateway with the CA and its client certificate is served; the certificate's name is
  // checked (--worker-tls-server-name), and a gateway without the certificate is not served.
  const tlsArgs = ['--worker-tls-ca', path.join(good, 'ca.crt'), '--worker-tls-cert', path.join(good, 'gateway.crt'),
    '--worker-tls-key', path.join(good, 'gateway.key')];
  for (const args of [tlsArgs, [...tlsArgs, '--worker-tls-server-name', 'r1-worker']]) {
    const g = await gateway(w, args);
    await waitFor(async () => (await postJson(`${g.url}/v1/completions`, completion)).status === 200, 'served over mTLS');
    await stop(g);
  }
  for (const args of [[], ['--worker-tls-ca', path.join(good, 'ca.crt')],
    [...tlsArgs, '--worker-tls-server-name', 'not-the-worker'],
    ['--worker-tls-ca', path.join(rogue, 'ca.crt'), '--worker-tls-cert', path.join(rogue, 'gateway.crt'), '--worker-tls-key', path.join(rogue, 'gateway.key')]]) {
    const g = await gateway(w, args);
    const r = await postJson(`${g.url}/v1/completions`, completion);
    assert.equal(r.status, 503, `${args.join(' ')}: ${r.text}`);
    assert.doesNotMatch(r.text, /127\.0\.0\.1|ipv4:/);
    await stop(g);
  }
});

test('token: Inference calls without the right token get UNAUTHENTICATED; health stays open', async () => {
  const w = await worker(['--auth-token-file', tokenFile]);
  assert.match(w.stdout(), /\(plaintext \+ token\)/);
  const plain = grpc.credentials.createInsecure();
  for (const md of [{}, { authorization: 'Bearer worker-token-guess' }, { authorization: 'worker-token-new' },
    { authorization: 'Bearer worker-token-ne' }]) {
    const r = await generate(w.port, plain, md);
    assert.equal(r.code, grpc.status.UNAUTHENTICATED, JSON.stringify(md));
    assert.equal(r.messages, 0);
    assert.equal((await unary(Inference, 'GetLoad', w.port, plain, md)).code, grpc.status.UNAUTHENTICATED);
  }
  // Both tokens of the file are accepted (so that one can be rotated out).
  for (const t of ['worker-token-new', 'worker-token-old']) {
    const r = await generate(w.port, plain, { authorization: `Bearer ${t}` });
    assert.equal(r.code, 0, r.details);
  }
  const health = await unary(Health, 'Check', w.port, plain);
  assert.equal(health.code, 0);
  assert.equal(health.reply.status, 'SERVING');

  const g = await gateway(w, ['--worker-token-file', tokenFile]);
  await waitFor(async () => (await postJson(`${g.url}/v1/completions`, completion)).status === 200, 'served with the token');
  // A gateway with a wrong token, or none, finds the worker refusing it: unhealthy, 503 (or,
  // should a request beat the first health poll's verdict, the worker's refusal: 502).
  for (const args of [['--worker-token-file', wrongTokenFile], []]) {
    const bad = await gateway(w, args);
    const r = await postJson(`${bad.url}/v1/completions`, completion);
    assert.ok(r.status === 503 || r.status === 502, r.text);
    await stop(bad);
  }
});

test('bad credential flags stop the programs at start with one line naming the flag', () => {
  const cases = [
    [process.env.R1_WORKER, ['--model', model, '--tls-cert', path.join(good, 'worker.crt')], /--tls-cert and --tls-key/],
    [process.env.R1_WORKER, ['--model', model, '--tls-client-ca', path.join(good, 'ca.crt')], /--tls-client-ca needs/],
    [process.env.R1_WORKER, ['--model', model, '--tls-cert', path.join(tmp, 'nope'), '--tls-key', path.join(good, 'worker.key')], /--tls-cert: cannot read/],
    [process.env.R1_WORKER, ['--model', model, '--tls-cert', tokenFile, '--tls-key', path.join(good, 'worker.key')], /--tls-cert: .* is not a PEM file/],
    [process.env.R1_WORKER, ['--model', model, '--auth-token-file', path.join(tmp, 'nope')], /--auth-token-file/],
    [env.gateway, ['--workers', '127.0.0.1:1', '--worker-tls-cert', path.join(good, 'gateway.crt'), '--worker-tls-key', path.join(good, 'gateway.key')], /need --worker-tls-ca/],
    [env.gateway, ['--workers', '127.0.0.1:1', '--worker-token-file', path.join(tmp, 'nope')], /--worker-token-file/],
  ];
  for (const [bin, args, re] of cases) {
    const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
