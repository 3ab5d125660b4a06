// A client in another language: @grpc/grpc-js + @grpc/proto-loader call r1-worker's Generate
// and read the stream. Usage: node node_client_test.js R1_WORKER R1_MKMODEL SOURCE_DIR
'use strict';
const path = require('path');
const fs = require('fs');
const os = require('os');
const { spawn, execFileSync } = require('child_process');

const [worker, mkmodel, sourceDir] = process.argv.slice(2);
if (!worker || !mkmodel || !sourceDir) {
  console.error('usage: node node_client_test.js R1_WORKER R1_MKMODEL SOURCE_DIR');
  process.exit(2);
}
const nodeModules = path.join(sourceDir, 'tests', 'node', 'node_modules');
const grpc = require(path.join(nodeModules, '@grpc', 'grpc-js'));
const protoLoader = require(path.join(nodeModules, '@grpc', 'proto-loader'));

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exitCode = 1;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'r1-node-test-'));
  const model = path.join(dir, 'model');
  execFileSync(mkmodel, ['--preset', 'tiny', '--out', model, '--dtype', 'float32']);
  const child = spawn(worker, ['--model', model, '--listen', '127.0.0.1:0', '--dtype', 'float32',
    '--log-level', 'warning'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('worker did not start')), 120000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/serving .* on 127\.0\.0\.1:(\d+)/);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      child.on('exit', (code) => reject(new Error('worker exited with ' + code)));
    });
    const def = protoLoader.loadSync(path.join(sourceDir, 'proto', 'r1serve', 'v1', 'inference.proto'),
      { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const proto = grpc.loadPackageDefinition(def).r1serve.v1;
    const client = new proto.Inference('127.0.0.1:' + port, grpc.credentials.createInsecure());

    // Stream 12 tokens.
    const ids = [];
    let last = null;
    let messages = 0;
    await new Promise((resolve, reject) => {
      const call = client.Generate({ request_id: 'node-1', token_ids: { ids: [11, 22, 33, 44] },
        max_tokens: 12, ignore_eos: true });
      call.on('data', (msg) => { messages++; ids.push(...msg.token_ids); last = msg; });
      call.on('error', reject);
      call.on('end', resolve);
    });
    if (ids.length !== 12) fail('want 12 ids, got ' + ids.length);
    if (!last || last.finish_reason !== 'FINISH_REASON_LENGTH') fail('finish reason ' + (last && last.finish_reason));
    if (last.usage.prompt_tokens !== 4 || last.usage.completion_tokens !== 12) {
      fail('usage ' + JSON.stringify(last.usage));
    }
    if (messages < 1) fail('no messages');

    // A bad value comes back as INVALID_ARGUMENT naming the field.
    const err = await new Promise((resolve) => {
      const call = client.Generate({ token_ids: { ids: [1] }, sampling: { temperature: -1 } });
      call.on('data', () => {});
      call.on('error', resolve);
      call.on('end', () => resolve(null));
    });
    if (!err || err.code !== grpc.status.INVALID_ARGUMENT || !/sampling\.temperature/.test(err.details)) {
      fail('want INVALID_ARGUMENT for sampling.temperature, got ' + (err && err.code + ' ' + err.details));
    }

    // GetLoad.
    const load = await new Promise((resolve, reject) => client.GetLoad({}, (e, r) => e ? reject(e) : resolve(r)));
    if (!(load.kv_blocks_total > 0) || load.device !== 'cpu') fail('load ' + JSON.stringify(load));
    client.close();
    if (!process.exitCode) console.log('node client: ok (' + ids.length + ' tokens in ' + messages + ' messages)');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { fail(e.stack || String(e)); });
