// Structured outputs, the thinking budget, logit_bias and min_tokens end to end: the OpenAI
// API on r1-gateway in front of a real r1-worker serving the tiny random-weight model. With
// random weights only the grammar makes the answers valid, so every seeded sample of every
// schema kind is checked by ajv (JSON Schema 2020-12), a reference independent of our code.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeRequire, startProcess, startGateway, waitReady, postJson, sseEvents, stop } from './harness.mjs';

const Ajv2020 = nodeRequire('ajv/dist/2020').default;
const OpenAI = nodeRequire('openai').default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1gw-structured-'));
const model = path.join(tmp, 'model');
const tokenizerJson = path.join(process.env.R1_SOURCE_DIR, '.cache/tokenizer/tokenizer.json');
const vocab = JSON.parse(fs.readFileSync(tokenizerJson, 'utf8')).model.vocab;
const started = [];
const SAMPLES = 6;  // seeded samples per schema kind
const BUDGET_MESSAGE = ' Time is up.\n';
const DEFAULT_BUDGET = 6;
let g, client;

// Every string is bounded (maxLength, enum, pattern): a random model never chooses to close
// a free string, so only bounded grammars end within max_tokens.
const S = (n) => ({ type: 'string', maxLength: n });
const KINDS = {
  objects: { type: 'object', additionalProperties: false, required: ['name', 'age'],
    properties: { name: S(10), age: { type: 'integer', minimum: 0, maximum: 150 }, nick: S(4) } },
  arrays: { type: 'object', additionalProperties: false, required: ['few', 'pair'], properties: {
    few: { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 1, maxItems: 4 },
    pair: { type: 'array', prefixItems: [{ type: 'boolean' }, S(3)], items: false, minItems: 2 } } },
  strings: { type: 'object', additionalProperties: false, required: ['color', 'fixed', 'code', 'short'],
    properties: { color: { enum: ['red', 'green', 'blue'] }, fixed: { const: 'exactly this' },
      code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3,4}$' }, short: { type: 'string', minLength: 2, maxLength: 5 } } },
  numbers: { type: 'object', additionalProperties: false, required: ['i', 'ie', 'n', 'ne'], properties: {
    i: { type: 'integer', minimum: -20, maximum: 1000 }, ie: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 10 },
    n: { type: 'number', minimum: 0.5, maximum: 2.25 }, ne: { type: 'number', exclusiveMinimum: -1, exclusiveMaximum: 1 } } },
  booleans_nulls: { type: 'array', items: { type: ['boolean', 'null'] }, minItems: 1, maxItems: 6 },
  any_of_one_of: { type: 'object', additionalProperties: false, required: ['value', 'shape'], properties: {
    value: { anyOf: [S(6), { type: 'integer' }, { type: 'null' }] },
    shape: { oneOf: [
      { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number', minimum: 0 } }, required: ['kind', 'r'], additionalProperties: false },
      { type: 'object', properties: { kind: { const: 'square' }, side: { type: 'integer', minimum: 1 } }, required: ['kind', 'side'], additionalProperties: false }] } } },
  ref_defs: { $defs: { node: { type: 'object', additionalProperties: false, required: ['label'],
    properties: { label: S(8), children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } } } },
  $ref: '#/$defs/node' },
  mixed_enum: { type: 'object', additionalProperties: false, required: ['v', 'typed'],
    properties: { v: { enum: ['on', 1, 2.5, true, null, { a: [1, 'x'] }, [1, 2]] }, typed: { type: 'string', enum: ['s', 3, 't'] } } },
};
const schemaFormat = (name, schema) => ({ type: 'json_schema', json_schema: { name, schema, strict: true } });
// json_object's keys are free strings: a bias toward '"', '}' and ']' lets the random model close them.
const CLOSING_BIAS = { [vocab['"']]: 10, [vocab['}']]: 10, [vocab[']']]: 10 };

function checkJson(schema, text) {
  let v;
  try { v = JSON.parse(text); } catch (e) { return `not JSON (${e.message}): ${JSON.stringify(text)}`; }
  const validate = new Ajv2020({ allErrors: true }).compile(schema);
  return validate(v) ? null : `${JSON.stringify(validate.errors)}: ${text}`;
}

// JSON's whitespace (space, tab, LF, CR) outside strings: the longest run in `text`.
function longestWhitespaceRun(text) {
  let longest = 0, run = 0, inString = false, escaped = false;
  for (const ch of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    run = ' \t\n\r'.includes(ch) ? run + 1 : 0;
    longest = Math.max(longest, run);
    if (ch === '"') inString = true;
  }
  return longest;
}
const MAX_WHITESPACE = 8;  // r1-worker's default --grammar-max-whitespace

async function complete(body) {
  const r = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'Answer:', temperature: 1, ...body });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function chat(body) {
  const r = await postJson(`${g.url}/v1/chat/completions`,
    { model: 'model', messages: [{ role: 'user', content: 'Give me JSON.' }], temperature: 1, ...body });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test.before(async () => {
  execFileSync(process.env.R1_MKMODEL, ['--preset', 'tiny', '--out', model, '--tokenizer', tokenizerJson], { stdio: 'ignore' });
  const w = await startProcess(process.env.R1_WORKER,
    ['--model', model, '--listen', '127.0.0.1:0', '--kv-cache-memory', String(64 << 20), '--log-level', 'warning',
     '--thinking-token-budget', String(DEFAULT_BUDGET), '--thinking-budget-message', BUDGET_MESSAGE],
    /serving .* on [^\s]*:(\d+)/);
  started.push(w);
  g = await startGateway([w]);
  started.push(g);
  await waitReady(g, 1);
  client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
test.after(async () => { for (const p of started.reverse()) await stop(p, 'SIGKILL'); fs.rmSync(tmp, { recursive: true }); });

test('every seeded sample of every schema kind validates (ajv)', async () => {
  const jobs = [];
  for (const [name, schema] of Object.entries(KINDS))
    for (let seed = 0; seed < SAMPLES; seed++)
      jobs.push({ name, schema, body: { response_format: schemaFormat(name, schema), seed, max_tokens: 600 } });
  for (let seed = 0; seed < SAMPLES; seed++) {
    jobs.push({ name: 'json_object', schema: { type: 'object' },
      body: { response_format: { type: 'json_object' }, logit_bias: CLOSING_BIAS, seed, max_tokens: 600 } });
    // vLLM's ways to say the same, beside OpenAI's.
    jobs.push({ name: 'guided_json', schema: KINDS.objects, body: { guided_json: KINDS.objects, seed, max_tokens: 600 } });
  }
  // All at once: constrained rows share the worker's batches.
  const results = await Promise.all(jobs.map((j) => complete(j.body)));
  results.forEach((r, i) => {
    const { name, schema, body } = jobs[i];
    assert.equal(r.choices[0].finish_reason, 'stop', `${name} seed ${body.seed} did not end: ${r.choices[0].text}`);
    const why = checkJson(schema, r.choices[0].text);
    assert.equal(why, null, `${name} seed ${body.seed}: ${why}`);
  });
  // Whitespace between JSON tokens is bounded by default, so a model cannot pad forever (a
  // random model pads: some run must show up, or the check would see nothing).
  const runs = results.map((r) => longestWhitespaceRun(r.choices[0].text));
  runs.forEach((n, i) => assert.ok(n <= MAX_WHITESPACE,
    `${jobs[i].name} seed ${jobs[i].body.seed}: a whitespace run of ${n}: ${JSON.stringify(results[i].choices[0].text)}`));
  assert.ok(Math.max(...runs) > 1, `no sample had whitespace: ${runs}`);
  // Different seeds give different answers (the grammar allows more than one text).
  for (const name of Object.keys(KINDS)) {
    const texts = new Set(results.filter((_, i) => jobs[i].name === name).map((r) => r.choices[0].text));
    assert.ok(texts.size > 1, `${name}: every seed gave the same text`);
  }
});

test('guided_choice, guided_regex and structured_outputs', async () => {
  const choices = ['positive', 'negative', 'très bien 👍'];
  const pattern = '\\d{3}-\\d{4}|[A-Z][a-z]{2,6} \\d{1,2}';
  const re = new RegExp(`^(?:${pattern})$`, 'u');
  const jobs = [];
  for (let seed = 0; seed < SAMPLES; seed++) {
    jobs.push(complete({ guided_choice: choices, seed, max_tokens: 64 }).then((r) => ['choice', r]));
    jobs.push(complete({ guided_regex: pattern, seed, max_tokens: 64 }).then((r) => ['regex', r]));
    jobs.push(complete({ structured_outputs: { choice: choices }, seed, max_tokens: 64 }).then((r) => ['choice', r]));
  }
  for (const [kind, r] of await Promise.all(jobs)) {
    const text = r.choices[0].text;
    assert.equal(r.choices[0].finish_reason, 'stop', text);
    if (kind === 'choice') assert.ok(choices.includes(text), JSON.stringify(text));
    else assert.match(text, re);
  }
});

test('streaming gives the same text, and the SDK reads both', async () => {
  for (const name of ['objects', 'ref_defs']) {
    const body = { model: 'model', prompt: 'Answer:', temperature: 1, seed: 3, max_tokens: 600,
      response_format: schemaFormat(name, KINDS[name]) };
    const whole = await client.completions.create(body);
    let text = '', finish = null;
    for await (const chunk of await client.completions.create({ ...body, stream: true })) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finish, 'stop');
    assert.equal(checkJson(KINDS[name], text), null);
  }
});

// n choices share one worker call, each with its own grammar state: every choice follows
// the schema and is the answer its own request with seed + k gives.
test('n = 4 choices of one request: each validates and equals a request of its own with seed + k', async () => {
  const body = { response_format: schemaFormat('objects', KINDS.objects), seed: 30, max_tokens: 600 };
  const many = await complete({ ...body, n: 4 });
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2, 3]);
  const alone = await Promise.all([0, 1, 2, 3].map((k) => complete({ ...body, seed: 30 + k })));
  many.choices.forEach((c, k) => {
    assert.equal(c.finish_reason, 'stop', `choice ${k}: ${c.text}`);
    assert.equal(checkJson(KINDS.objects, c.text), null, `choice ${k}: ${c.text}`);
    assert.equal(c.text, alone[k].choices[0].text, `choice ${k}`);
  });
  assert.ok(new Set(many.choices.map((c) => c.text)).size > 1, 'the choices are samples, not copies');
});

test('a max_tokens cut is finish_reason length (and honestly not valid)', async () => {
  const r = await complete({ response_format: schemaFormat('objects', KINDS.objects), seed: 1, max_tokens: 5 });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
  assert.throws(() => JSON.parse(r.choices[0].text));
});

test('a malformed or unsupported format is a 400 naming the field and the keyword', async () => {
  const url = `${g.url}/v1/chat/completions`;
  const base = { model: 'model', messages: [{ role: 'user', content: 'x' }], max_tokens: 8 };
  const cases = [
    [{ response_format: schemaFormat('s', { type: 'strin' }) }, 'response_format', /"type"/],
    [{ response_format: schemaFormat('s', { type: 'string', format: 'date' }) }, 'response_format', /"format" at #\/format/],
    [{ response_format: schemaFormat('s', { properties: { a: { $ref: '#/$defs/none' } } }) }, 'response_format', /\$ref/],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }, 'response_format', /schema is required/],
    [{ response_format: { type: 'yaml' } }, 'response_format', /json_object/],
    [{ guided_json: { type: 'object', patternProperties: { a: {} } } }, 'guided_json', /patternProperties/],
    [{ guided_json: '{not json' }, 'guided_json', /not valid JSON/],
    [{ guided_regex: '(a)\\1' }, 'guided_regex', /guided_regex/],
    [{ guided_grammar: 'root ::= "a"' }, 'guided_grammar', /not supported/],
    [{ guided_choice: ['a'], response_format: { type: 'json_object' } }, 'guided_choice', /give one/],
    [{ response_format: { type: 'json_object' }, ignore_eos: true }, 'ignore_eos', /ignore_eos/],
  ];
  for (const [extra, param, message] of cases) {
    const r = await postJson(url, { ...base, ...extra });
    assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${r.text}`);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.equal(r.json.error.param, param, r.text);
    assert.match(r.json.error.message, message);
  }
  // The worker keeps serving.
  assert.equal((await complete({ guided_choice: ['ok'], max_tokens: 8 })).choices[0].text, 'ok');
});

test('with a schema and a thinking budget every chat ends in a valid answer', async () => {
  // The tiny model's chat template (DeepSeek-R1's) opens a thought; random weights never
  // close it, so the budget does: its message and </think> are forced, then the grammar holds.
  const k = (await chat({ thinking_token_budget: 0, max_tokens: 40, guided_choice: ['done'] }))
    .usage.completion_tokens_details.reasoning_tokens;  // the message's tokens
  assert.ok(k > 0);
  const jobs = [];
  for (let seed = 0; seed < SAMPLES; seed++) {
    for (const name of ['objects', 'numbers', 'ref_defs']) {
      const budget = 3 + seed;
      jobs.push(chat({ response_format: schemaFormat(name, KINDS[name]), thinking_token_budget: budget, seed, max_tokens: 700 })
        .then((r) => ({ r, name, budget })));
    }
  }
  jobs.push(chat({ response_format: schemaFormat('objects', KINDS.objects), max_reasoning_tokens: 2, seed: 9, max_tokens: 700 })
    .then((r) => ({ r, name: 'objects', budget: 2 })));
  for (const { r, name, budget } of await Promise.all(jobs)) {
    const m = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'stop', JSON.stringify(m));
    assert.ok(m.reasoning_content.endsWith(BUDGET_MESSAGE), JSON.stringify(m.reasoning_content));
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, budget + k);
    assert.equal(checkJson(KINDS[name], m.content), null);
  }
});

test('the worker default budget, no limit, and the reasoning count while streaming', async () => {
  const free = await chat({ max_tokens: 24 });  // --thinking-token-budget 6 applies
  assert.ok(free.choices[0].message.reasoning_content.endsWith(BUDGET_MESSAGE));
  const k = free.usage.completion_tokens_details.reasoning_tokens - DEFAULT_BUDGET;
  assert.ok(free.choices[0].message.content.length > 0);  // the answer follows the thought
  const unlimited = await chat({ max_tokens: 24, thinking_token_budget: -1, seed: 1 });
  assert.equal(unlimited.choices[0].message.content, null);
  assert.equal(unlimited.usage.completion_tokens_details.reasoning_tokens, 24);
  const events = sseEvents((await postJson(`${g.url}/v1/chat/completions`, { model: 'model', stream: true,
    stream_options: { include_usage: true }, max_tokens: 20, thinking_token_budget: 4,
    messages: [{ role: 'user', content: 'x' }] })).text);
  const usage = JSON.parse(events.at(-2)).usage;
  assert.equal(usage.completion_tokens_details.reasoning_tokens, 4 + k);
  let reasoning = '';
  for (const e of events.slice(0, -2)) reasoning += JSON.parse(e).choices[0]?.delta?.reasoning_content ?? '';
  assert.ok(reasoning.endsWith(BUDGET_MESSAGE), JSON.stringify(reasoning));
});

test('logit_bias steers and bans tokens; min_tokens holds back end-of-sequence', async () => {
  const [hello, world] = [vocab.Hello, vocab.World];
  const r = await complete({ temperature: 0, max_tokens: 4, logit_bias: { [hello]: 100 } });
  assert.equal(r.choices[0].text, 'Hello'.repeat(4));
  const both = await complete({ seed: 1, max_tokens: 12, logit_bias: { [hello]: 100, [world]: 100 } });
  assert.match(both.choices[0].text, /^(Hello|World){12}$/);
  assert.match(both.choices[0].text, /Hello/);
  const banned = await complete({ seed: 1, max_tokens: 12, logit_bias: { [hello]: -100, [world]: 100 } });
  assert.equal(banned.choices[0].text, 'World'.repeat(12));
  // End-of-sequence (<｜end▁of▁sentence｜>, 151643) made certain by a bias, held back by min_tokens.
  for (const min of [0, 7]) {
    const e = await complete({ temperature: 1, seed: 2, max_tokens: 50, logit_bias: { 151643: 100 }, min_tokens: min });
    assert.equal(e.choices[0].finish_reason, 'stop');
    assert.equal(e.usage.completion_tokens, min + 1);
  }
  const bad = await postJson(`${g.url}/v1/completions`, { model: 'model', prompt: 'x', logit_bias: { 999999: 1 } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'logit_bias');
  assert.match(bad.json.error.message, /outside the vocabulary/);
});
