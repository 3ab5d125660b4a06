// Issue 13 through the real gateway and real r1-worker processes (the tiny random-weight
// model), with the OpenAI Node SDK where it applies: every field honoured or refused (and the
// README's field table saying the same), reasoning under both names, include_reasoning,
// generation_config.json defaults, routing by model, the extra endpoints, tools rendered by
// the checkpoint's template (checked against Jinja2's rendering in chat_tools.json) and tool
// calls parsed from the output (fake workers that say a given text), ports and gRPC health.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { nodeRequire, startProcess, startGateway, startFakeWorker, waitReady, waitFor, postJson, sseEvents, stop, getLoad, metric, env } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-api-'));
const model = path.join(tmp, 'model');
const started = [];

function worker(args = [], dir = model) {
  return startProcess(process.env.R1_WORKER,
    ['--model', dir, '--listen', '127.0.0.1:0', '--kv-cache-memory', String(32 << 20),
     '--drain-timeout', '1', '--log-level', 'warning', ...args], /serving .* on [^\s]*:(\d+)/)
    .then((w) => { started.push(w); return w; });
}
async function gateway(ws, args = []) {
  const g = await startGateway(ws, args);
  started.push(g);
  await waitReady(g, ws.length);
  return g;
}
const client = (g) => new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
const hi = [{ role: 'user', content: 'What is 2+2?' }];

let a, b, g;  // two workers serving 'a' and 'b' (b: --generation-config none), one gateway
test.before(async () => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--out', model, '--tokenizer',
    path.join(env.sourceDir, '.cache/tokenizer/tokenizer.json')], { stdio: 'ignore' });
  // The checkpoint's defaults: greedy, so that a request without temperature repeats itself.
  const gc = JSON.parse(fs.readFileSync(path.join(model, 'generation_config.json'), 'utf8'));
  fs.writeFileSync(path.join(model, 'generation_config.json'),
    JSON.stringify({ ...gc, temperature: 0.0, top_p: 0.95 }));
  a = await worker(['--served-model-name', 'a']);
  b = await worker(['--served-model-name', 'b', '--generation-config', 'none']);
  g = await gateway([a, b]);
});
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); fs.rmSync(tmp, { recursive: true }); });

// Field -> [API, a non-default value, 'refused' | 'accepted']. Every row of the README's field
// table with one of these statuses must be here, and the other way round.
const CASES = {
  suffix: ['completions', 'x', 'refused'], best_of: ['completions', 2, 'refused'],
  use_beam_search: ['chat', true, 'refused'], length_penalty: ['chat', 0.5, 'refused'],
  prompt_logprobs: ['completions', 1, 'refused'], truncate_prompt_tokens: ['chat', 5, 'refused'],
  allowed_token_ids: ['chat', [1], 'refused'], bad_words: ['chat', ['x'], 'refused'],
  logits_processors: ['chat', ['x'], 'refused'], spaces_between_special_tokens: ['chat', false, 'refused'],
  priority: ['chat', 1, 'refused'], return_tokens_as_token_ids: ['chat', true, 'refused'],
  return_token_ids: ['completions', true, 'refused'], add_special_tokens: ['completions', true, 'refused'],
  add_generation_prompt: ['chat', false, 'refused'], continue_final_message: ['chat', true, 'refused'],
  chat_template: ['chat', '{{x}}', 'refused'], chat_template_kwargs: ['chat', { a: 1 }, 'refused'],
  documents: ['chat', [{ a: 1 }], 'refused'], functions: ['chat', [{ name: 'f' }], 'refused'],
  function_call: ['chat', 'auto', 'refused'], modalities: ['chat', ['audio'], 'refused'],
  audio: ['chat', { voice: 'x' }, 'refused'], prediction: ['chat', { type: 'content', content: 'x' }, 'refused'],
  web_search_options: ['chat', {}, 'refused'], reasoning_effort: ['chat', 'low', 'refused'],
  verbosity: ['chat', 'low', 'refused'],
  guided_grammar: ['chat', 'root ::= "a"', 'refused'], guided_whitespace_pattern: ['completions', ' ', 'refused'],
  guided_decoding_backend: ['chat', 'xgrammar', 'accepted'],
  store: ['chat', true, 'accepted'], metadata: ['chat', { k: 'v' }, 'accepted'],
  service_tier: ['chat', 'auto', 'accepted'], prompt_cache_key: ['chat', 'k', 'accepted'],
  safety_identifier: ['chat', 'u1', 'accepted'], request_id: ['completions', 'r1', 'accepted'],
  cache_salt: ['chat', 's', 'accepted'], parallel_tool_calls: ['chat', false, 'accepted'],
};

function readmeFieldTable() {
  const text = fs.readFileSync(path.join(env.sourceDir, 'README.md'), 'utf8');
  const start = text.indexOf('<!-- BEGIN FIELDS -->'), end = text.indexOf('<!-- END FIELDS -->');
  assert.ok(start > 0 && end > start, 'README has the field table');
  const rows = {};
  for (const line of text.slice(start, end).split('\n')) {
    const m = line.match(/^\| `([a-z_]+)` \| ([^|]+) \| ([a-z ]+) \|/);
    if (m) rows[m[1]] = { apis: m[2].trim(), status: m[3].trim() };
  }
  return rows;
}

test('every refused field is a 400 naming it; accepted no-ops change nothing; README agrees', async () => {
  const rows = readmeFieldTable();
  for (const [field, [api, value, status]] of Object.entries(CASES)) {
    assert.equal(rows[field]?.status, status, `README row for ${field}`);
    const body = api === 'chat' ? { model: 'a', messages: hi, max_tokens: 2 } : { model: 'a', prompt: 'Hi', max_tokens: 2 };
    body[field] = value;
    const r = await postJson(`${g.url}/v1/${api === 'chat' ? 'chat/completions' : 'completions'}`, body);
    if (status === 'refused') {
      assert.equal(r.status, 400, `${field}: ${r.text}`);
      assert.equal(r.json.error.param, field);
      assert.equal(r.json.error.type, 'invalid_request_error');
      // Its default value is fine.
    } else {
      assert.equal(r.status, 200, `${field}: ${r.text}`);
    }
  }
  for (const [field, row] of Object.entries(rows))
    if (row.status === 'refused' || row.status === 'accepted') assert.ok(CASES[field], `test case for README row ${field}`);
  // A field nobody knows: OpenAI's words, the field named.
  const u = await postJson(`${g.url}/v1/chat/completions`, { model: 'a', messages: hi, temprature: 0.5 });
  assert.equal(u.status, 400);
  assert.equal(u.json.error.param, 'temprature');
  assert.match(u.json.error.message, /Unrecognized request argument supplied: temprature/);
  // Defaults of refused fields are accepted.
  const d = await postJson(`${g.url}/v1/completions`, { model: 'a', prompt: 'Hi', max_tokens: 2, best_of: 1, suffix: null, echo: false });
  assert.equal(d.status, 200, d.text);
});

test('SDK: reasoning under reasoning_content and reasoning; include_reasoning false drops it', async () => {
  const c = client(g);
  const r = await c.chat.completions.create({ model: 'a', messages: hi, max_tokens: 8, temperature: 0 });
  const m = r.choices[0].message;
  assert.ok(m.reasoning_content.length > 0, 'the random model never closes </think>: all reasoning');
  assert.equal(m.reasoning, m.reasoning_content);
  const s = await c.chat.completions.create({ model: 'a', messages: hi, max_tokens: 8, temperature: 0, stream: true });
  let rc = '', rr = '';
  for await (const ch of s) { rc += ch.choices[0]?.delta.reasoning_content ?? ''; rr += ch.choices[0]?.delta.reasoning ?? ''; }
  assert.equal(rc, m.reasoning_content);
  assert.equal(rr, rc);
  const off = await c.chat.completions.create({ model: 'a', messages: hi, max_tokens: 8, temperature: 0, include_reasoning: false });
  assert.equal(off.choices[0].message.reasoning_content, null);
  assert.equal(off.choices[0].message.reasoning, null);
  assert.equal(off.usage.completion_tokens, 8);
  const so = await c.chat.completions.create({ model: 'a', messages: hi, max_tokens: 8, temperature: 0, include_reasoning: false, stream: true });
  for await (const ch of so) assert.equal(ch.choices[0]?.delta.reasoning_content, undefined);
});

test('SDK: include_stop_str_in_output, echo, user', async () => {
  const c = client(g);
  const full = (await c.completions.create({ model: 'a', prompt: 'Once upon', max_tokens: 12, temperature: 0 })).choices[0].text;
  const stopStr = full.slice(4, 6);
  assert.ok(stopStr.length === 2 && !full.slice(0, 4).includes(stopStr), `stop string from ${JSON.stringify(full)}`);
  const cut = (await c.completions.create({ model: 'a', prompt: 'Once upon', max_tokens: 12, temperature: 0, stop: [stopStr] })).choices[0];
  const kept = (await c.completions.create({ model: 'a', prompt: 'Once upon', max_tokens: 12, temperature: 0, stop: [stopStr], include_stop_str_in_output: true })).choices[0];
  assert.equal(cut.text, full.slice(0, 4));
  assert.equal(kept.text, full.slice(0, 6));
  assert.equal(kept.finish_reason, 'stop');
  // echo: the prompt, then the same completion; token-id prompts come back decoded.
  const e = await c.completions.create({ model: 'a', prompt: 'Once upon', max_tokens: 12, temperature: 0, echo: true, user: 'alice' });
  assert.equal(e.choices[0].text, 'Once upon' + full);
  const ids = JSON.parse((await postJson(`${g.url}/tokenize`, { model: 'a', prompt: 'Once upon' })).text).tokens;
  const ei = await c.completions.create({ model: 'a', prompt: ids, max_tokens: 12, temperature: 0, echo: true, stream: true });
  let t = '';
  for await (const ch of ei) t += ch.choices[0]?.text ?? '';
  assert.equal(t, 'Once upon' + full);
});

test('SDK: echo with logprobs scores the prompt as the sampler scores a next token', async () => {
  const c = client(g);
  const ids = JSON.parse((await postJson(`${g.url}/tokenize`, { model: 'a', prompt: 'Once upon a time' })).text).tokens;
  assert.ok(ids.length >= 3);
  for (const stream of [false, true]) {
    const req = { model: 'a', prompt: ids, max_tokens: 2, temperature: 0, echo: true, logprobs: 3 };
    let lp;
    if (!stream) {
      lp = (await c.completions.create(req)).choices[0].logprobs;
    } else {
      lp = { tokens: [], token_logprobs: [], top_logprobs: [] };
      for await (const ch of await c.completions.create({ ...req, stream: true })) {
        const l = ch.choices[0]?.logprobs;
        if (l) for (const k of Object.keys(lp)) lp[k].push(...l[k]);
      }
    }
    assert.equal(lp.tokens.length, ids.length + 2);
    assert.equal(lp.tokens.slice(0, ids.length).join(''), 'Once upon a time');
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    for (let i = 1; i < lp.tokens.length; i++) assert.ok(lp.token_logprobs[i] <= 0);
    // Position i of the prompt is scored by the logits after tokens 0..i-1: the same
    // distribution a completion of that prefix samples its first token from.
    for (const i of [1, ids.length - 1]) {
      const next = (await c.completions.create({ model: 'a', prompt: ids.slice(0, i), max_tokens: 1, temperature: 0, logprobs: 3 })).choices[0].logprobs;
      const want = next.top_logprobs[0], got = lp.top_logprobs[i];
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `alternatives at ${i}`);
      for (const k of Object.keys(want)) assert.ok(Math.abs(got[k] - want[k]) < 1e-3, `${k}: ${got[k]} vs ${want[k]}`);
      if (lp.tokens[i] in want) assert.ok(Math.abs(lp.token_logprobs[i] - want[lp.tokens[i]]) < 1e-3);
    }
  }
});

test('generation_config.json: defaults in force, shown in /v1/models and load reports', async () => {
  const c = client(g);
  const models = await c.models.list();
  const byId = Object.fromEntries(models.data.map((m) => [m.id, m]));
  assert.deepEqual(Object.keys(byId).sort(), ['a', 'b']);
  assert.deepEqual(byId.a.generation_defaults, { source: 'generation_config.json', temperature: 0, top_p: 0.95 });
  assert.deepEqual(byId.b.generation_defaults, { source: 'none' });
  const la = await getLoad(a.port);
  assert.equal(la.generation_defaults.source, 'generation_config.json');
  assert.equal(la.generation_defaults.temperature, 0);
  // a: no temperature in the request -> the file's 0 (greedy): the same text every time.
  const p = { messages: hi, max_tokens: 12 };
  const a1 = await c.chat.completions.create({ model: 'a', ...p });
  const a2 = await c.chat.completions.create({ model: 'a', ...p });
  const greedy = await c.chat.completions.create({ model: 'a', ...p, temperature: 0 });
  assert.equal(a1.choices[0].message.reasoning_content, greedy.choices[0].message.reasoning_content);
  assert.equal(a2.choices[0].message.reasoning_content, greedy.choices[0].message.reasoning_content);
  // b (--generation-config none): OpenAI's temperature 1, as an explicit 1 with the same seed.
  const b1 = await c.chat.completions.create({ model: 'b', ...p, seed: 3 });
  const b2 = await c.chat.completions.create({ model: 'b', ...p, seed: 3, temperature: 1 });
  assert.equal(b1.choices[0].message.reasoning_content, b2.choices[0].message.reasoning_content);
  assert.notEqual(b1.choices[0].message.reasoning_content, greedy.choices[0].message.reasoning_content);
});

test('routing by model: each model on its worker, unknown models 404, models.retrieve', async () => {
  const c = client(g);
  const before = { a: await metric(g, 'r1_gateway_upstream_attempts_total', `${a.port}`), b: await metric(g, 'r1_gateway_upstream_attempts_total', `${b.port}`) };
  for (let i = 0; i < 4; i++) await c.chat.completions.create({ model: 'b', messages: hi, max_tokens: 1 });
  assert.equal(await metric(g, 'r1_gateway_upstream_attempts_total', `${a.port}`), before.a);
  assert.equal(await metric(g, 'r1_gateway_upstream_attempts_total', `${b.port}`), before.b + 4);
  await assert.rejects(c.chat.completions.create({ model: 'gpt-4o', messages: hi }),
    (e) => e.status === 404 && e.code === 'model_not_found' && e.param === 'model');
  const m = await c.models.retrieve('a');
  assert.equal(m.id, 'a');
  assert.equal(m.object, 'model');
  await assert.rejects(c.models.retrieve('nope'), (e) => e.status === 404 && e.code === 'model_not_found');
});

test('endpoints: /health, /version, /tokenize, /detokenize, Allow on 405', async () => {
  assert.equal((await fetch(`${g.url}/health`)).status, 200);
  const v = await (await fetch(`${g.url}/version`)).json();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
  const t = await postJson(`${g.url}/tokenize`, { model: 'a', prompt: 'Hello world', return_token_strs: true });
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json.count, t.json.tokens.length);
  assert.ok(t.json.max_model_len > 0);
  assert.equal(t.json.token_strs.join(''), 'Hello world');
  const d = await postJson(`${g.url}/detokenize`, { model: 'a', tokens: t.json.tokens });
  assert.deepEqual(d.json, { prompt: 'Hello world' });
  const chat = await postJson(`${g.url}/tokenize`, { messages: hi });
  const text = (await postJson(`${g.url}/detokenize`, { tokens: chat.json.tokens })).json.prompt;
  assert.equal(text, '<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n');
  assert.equal((await postJson(`${g.url}/tokenize`, { model: 'zz', prompt: 'x' })).status, 404);
  const bad = await postJson(`${g.url}/detokenize`, { tokens: [1e9] });
  assert.equal(bad.status, 400);
  const r405 = await fetch(`${g.url}/v1/models`, { method: 'POST' });
  assert.equal(r405.status, 405);
  assert.equal(r405.headers.get('allow'), 'GET, HEAD');
  const t405 = await fetch(`${g.url}/tokenize`);
  assert.equal(t405.headers.get('allow'), 'POST');
  const m405 = await fetch(`${g.url}/v1/models/a`, { method: 'DELETE' });
  assert.equal(m405.headers.get('allow'), 'GET, HEAD');
});

test('tools: rendered by the checkpoint template as Jinja2 renders it; refused where unsupported', async () => {
  const fixture = JSON.parse(fs.readFileSync(path.join(env.sourceDir, 'tests/fixtures/tokenizer/chat_tools.json'), 'utf8'));
  for (const conv of fixture.conversations) {
    const t = await postJson(`${g.url}/tokenize`, { model: 'a', messages: conv.messages, tools: conv.tools });
    assert.equal(t.status, 200, t.text);
    const text = (await postJson(`${g.url}/detokenize`, { model: 'a', tokens: t.json.tokens })).json.prompt;
    assert.equal(text, conv.renders['deepseek-r1/gen'], conv.name);
  }
  // Generation with tool history and a tools list goes through.
  const c = client(g);
  const conv = fixture.conversations[1];
  const r = await c.chat.completions.create({ model: 'a', messages: conv.messages, tools: conv.tools, max_tokens: 4 });
  assert.equal(r.choices[0].finish_reason, 'length');
  const req = await postJson(`${g.url}/v1/chat/completions`, { model: 'a', messages: hi, tools: conv.tools, tool_choice: 'required' });
  assert.equal(req.status, 400);
  assert.equal(req.json.error.param, 'tool_choice');
  const missing = await postJson(`${g.url}/v1/chat/completions`, { model: 'a', messages: hi, tools: conv.tools, tool_choice: { type: 'function', function: { name: 'nope' } } });
  assert.equal(missing.json.error.param, 'tool_choice');
  // A ChatML worker has no tool support: 400 naming tools.
  const ml = await worker(['--served-model-name', 'ml', '--chat-template', 'chatml']);
  const g2 = await gateway([ml]);
  const nt = await postJson(`${g2.url}/v1/chat/completions`, { model: 'ml', messages: hi, tools: conv.tools });
  assert.equal(nt.status, 400, nt.text);
  assert.equal(nt.json.error.param, 'tools');
  assert.match(nt.json.error.message, /chatml.*no tool support/);
});

test('tool calls parsed from the output, whole and streamed (both formats)', async () => {
  const f = await startFakeWorker();
  started.push(f);
  const g3 = await gateway([f]);
  const c = client(g3);
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
  const outputs = {
    hermes: 'I will check.</think>Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京"}}\n</tool_call>',
    deepseek: 'I will check.</think>Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "東京"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
  };
  for (const [name, say] of Object.entries(outputs)) {
    const messages = [{ role: 'user', content: '@say:' + say }];
    const r = await c.chat.completions.create({ model: 'm', messages, tools });
    const m = r.choices[0].message;
    assert.equal(m.content, 'Sure.', name);
    assert.equal(m.reasoning_content, 'I will check.');
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(m.tool_calls.map((t) => [t.type, t.function.name, JSON.parse(t.function.arguments)]),
      [['function', 'get_weather', { city: 'Paris' }], ['function', 'get_weather', { city: '東京' }]]);
    assert.ok(m.tool_calls.every((t) => t.id.startsWith('call_')));
    // Streamed: the SDK's accumulated deltas give the same calls.
    const s = c.beta?.chat?.completions?.stream
      ? await c.beta.chat.completions.stream({ model: 'm', messages, tools })
      : await c.chat.completions.stream({ model: 'm', messages, tools });
    const done = await s.finalChatCompletion();
    assert.equal(done.choices[0].message.content, 'Sure.');
    assert.deepEqual(done.choices[0].message.tool_calls.map((t) => JSON.parse(t.function.arguments)), [{ city: 'Paris' }, { city: '東京' }]);
    assert.equal(done.choices[0].finish_reason, 'tool_calls');
    // parallel_tool_calls false: the first call only. tool_choice none: no parsing.
    const one = await c.chat.completions.create({ model: 'm', messages, tools, parallel_tool_calls: false });
    assert.equal(one.choices[0].message.tool_calls.length, 1);
    const none = await c.chat.completions.create({ model: 'm', messages, tools, tool_choice: 'none' });
    assert.equal(none.choices[0].message.tool_calls, undefined);
    assert.ok(none.choices[0].message.content.includes('get_weather'));
  }
});

test('ports: a taken port is "address in use" and a non-zero exit; gRPC health by service name', async () => {
  const wr = spawnSync(process.env.R1_WORKER, ['--model', model, '--listen', `127.0.0.1:${a.port}`], { encoding: 'utf8', timeout: 60000 });
  assert.notEqual(wr.status, 0);
  assert.match(wr.stderr, /address in use/);
  const gr = spawnSync(env.gateway, ['--listen', `127.0.0.1:${g.port}`, '--workers', `127.0.0.1:${a.port}`], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(gr.status, 0);
  assert.match(gr.stderr, /address in use/);
  const grpc = nodeRequire('@grpc/grpc-js');
  const loader = nodeRequire('@grpc/proto-loader');
  const def = loader.loadSync(path.join(env.sourceDir, 'proto/grpc/health/v1/health.proto'), { keepCase: true, enums: String });
  const Health = grpc.loadPackageDefinition(def).grpc.health.v1.Health;
  const h = new Health(`127.0.0.1:${a.port}`, grpc.credentials.createInsecure());
  const check = (service) => new Promise((res, rej) => h.Check({ service }, (e, r) => (e ? rej(e) : res(r.status))));
  assert.equal(await check(''), 'SERVING');
  assert.equal(await check('r1serve.v1.Inference'), 'SERVING');
  await assert.rejects(check('nope'), (e) => e.code === grpc.status.NOT_FOUND);
  h.close();
});

// The README's Node SDK and curl examples, run as written against the demo-shaped model
// (only the address and the model name changed): each prints visible text.
test('README examples print something with the demo model', async () => {
  const readme = fs.readFileSync(path.join(env.sourceDir, 'README.md'), 'utf8');
  const adapt = (s) => s.replaceAll('http://127.0.0.1:8080', g.url).replaceAll('demo-model', 'a');
  const js = readme.match(/```js\n([\s\S]*?)```/)[1];
  const file = path.join(env.nodeDir, `readme-example-${process.pid}.mjs`);
  fs.writeFileSync(file, adapt(js));
  try {
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8', timeout: 60000 });
    const m = out.match(/^reasoning: (.+)$/m);
    assert.ok(m && m[1].trim().length > 0 && m[1] !== 'null', out);
  } finally {
    fs.rmSync(file);
  }
  const curlBlock = readme.match(/```sh\n(curl -s http:\/\/127\.0\.0\.1:8080\/v1\/completions[\s\S]*?)```/)[1];
  const out = execFileSync('bash', ['-c', adapt(curlBlock)], { encoding: 'utf8', timeout: 60000 });
  assert.ok(JSON.parse(out).choices[0].text.length > 0, out);
});

// stop_token_ids, skip_special_tokens and user through the SDK, gateway and worker: tokens made
// certain (or equally likely) with logit_bias, so the expected text follows from the ids.
test('SDK: stop_token_ids, skip_special_tokens, include_stop_str_in_output on a stop token; user logged', async () => {
  const c = client(g);
  const id = async (text) => {
    const t = JSON.parse((await postJson(`${g.url}/tokenize`, { model: 'a', prompt: text })).text).tokens;
    assert.equal(t.length, 1, `${text} is one token`);
    return t[0];
  };
  // <｜begin▁of▁sentence｜> is a special token in DeepSeek-R1's tokenizer.json; <｜User｜> is not
  // (special: false), so it stays in the text as transformers' decode keeps it.
  const [hello, world, special, user] = [await id('Hello'), await id('World'), await id('<｜begin▁of▁sentence｜>'), await id('<｜User｜>')];
  // A seed whose draws have some Hello, then a World.
  let req, free, first = -1;
  for (let seed = 1; seed <= 40 && first <= 0; seed++) {
    req = { model: 'a', prompt: 'Hi', max_tokens: 12, temperature: 1, seed, logit_bias: { [hello]: 100, [world]: 100 } };
    free = (await c.completions.create(req)).choices[0];
    assert.match(free.text, /^(Hello|World){12}$/);
    first = free.text.indexOf('World');
  }
  assert.ok(first > 0, free.text);
  // Stopped at the first World (seeded: the same draws), which is not in the text unless asked.
  const stopped = await c.completions.create({ ...req, stop_token_ids: [world] });
  assert.equal(stopped.choices[0].text, free.text.slice(0, first));
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.usage.completion_tokens, first / 5 + 1);
  const kept = await c.completions.create({ ...req, stop_token_ids: [world], include_stop_str_in_output: true });
  assert.equal(kept.choices[0].text, free.text.slice(0, first + 5));
  // A special token: left out of the text by default, kept with skip_special_tokens false.
  const sp = { model: 'a', prompt: 'Hi', max_tokens: 3, temperature: 0, logit_bias: { [special]: 100 } };
  const skipped = await c.completions.create(sp);
  assert.equal(skipped.choices[0].text, '');
  assert.equal(skipped.usage.completion_tokens, 3);
  const shown = await c.completions.create({ ...sp, skip_special_tokens: false });
  assert.equal(shown.choices[0].text, '<｜begin▁of▁sentence｜>'.repeat(3));
  const plain = await c.completions.create({ ...sp, logit_bias: { [user]: 100 } });
  assert.equal(plain.choices[0].text, '<｜User｜>'.repeat(3));
  const chat = await c.chat.completions.create({ model: 'a', messages: hi, max_tokens: 2, temperature: 0,
    logit_bias: { [special]: 100 }, skip_special_tokens: false, user: 'user-7f3a' });
  assert.equal(chat.choices[0].message.reasoning_content, '<｜begin▁of▁sentence｜>'.repeat(2));
  // user: accepted, and logged with the request id.
  await waitFor(() => g.stderr().includes(`${chat.id}: model a, user user-7f3a`), 'the user in the gateway log');
});

// The thinking budget on /v1/completions: a text prompt that opens a thought is tracked as a
// chat's is (the chat side is in structured_outputs.test.mjs).
test('SDK: thinking_token_budget on completions ends the thought with </think>', async () => {
  const c = client(g);
  const prompt = '<｜User｜>What is 2+2?<｜Assistant｜><think>\n';
  for (const budget of [0, 3]) {
    const r = await c.completions.create({ model: 'a', prompt, max_tokens: 12, temperature: 0,
      thinking_token_budget: budget, logit_bias: { 151643: -100 } });
    const t = r.choices[0].text;
    assert.equal(r.usage.completion_tokens, 12);
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, budget);
    const thought = JSON.parse((await postJson(`${g.url}/tokenize`, { model: 'a', prompt: t.slice(0, t.indexOf('</think>')) })).text);
    assert.ok(t.includes('</think>'), t);
    assert.ok(thought.count <= budget + 1, `${thought.count} tokens of thought: ${JSON.stringify(t)}`);
  }
});
