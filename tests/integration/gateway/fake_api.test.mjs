// The OpenAI API through the gateway, against scripted fake workers: the official OpenAI
// Node SDK for plain and streamed chat and completions; curl for the SSE framing.
import test from 'node:test';
import assert from 'node:assert/strict';
import { nodeRequire, startFakeWorker, startGateway, waitReady, curl, sseEvents, postJson, stop } from './harness.mjs';

const OpenAI = nodeRequire('openai').default;
let w1, w2, g, gNoSplit, client;

test.before(async () => {
  w1 = await startFakeWorker(['--name', 'a']);
  w2 = await startFakeWorker(['--name', 'b']);
  g = await startGateway([w1, w2]);
  gNoSplit = await startGateway([w1], ['--no-reasoning-split']);
  await waitReady(g, 2);
  await waitReady(gNoSplit, 1);
  client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
test.after(async () => { for (const p of [g, gNoSplit, w1, w2]) if (p) await stop(p); });

test('models', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['m']);
});

test('plain chat with reasoning split and usage', async () => {
  const r = await client.chat.completions.create({
    model: 'm', messages: [{ role: 'user', content: 'What is 2+2? @think' }] });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.reasoning_content, 'Let me think.');
  assert.equal(r.choices[0].message.content, '\n\nThe answer is 4.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, 9);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 9);
});

test('streamed chat: reasoning and content deltas, usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'm', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'hi @think' }] });
  let reasoning = '', content = '', finish = null, usage = null, roles = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) roles++;
      reasoning += c.delta.reasoning_content ?? '';
      content += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(roles, 1);
  assert.equal(reasoning, 'Let me think.');
  assert.equal(content, '\n\nThe answer is 4.');
  assert.equal(finish, 'stop');
  assert.equal(usage.completion_tokens, 9);
});

test('--no-reasoning-split keeps everything in content', async () => {
  const c = new OpenAI({ baseURL: `${gNoSplit.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const r = await c.chat.completions.create({
    model: 'm', messages: [{ role: 'user', content: '@think' }] });
  assert.equal(r.choices[0].message.content, 'Let me think.</think>\n\nThe answer is 4.');
  assert.equal(r.choices[0].message.reasoning_content, undefined);
});

test('plain and streamed completions, max_tokens gives finish_reason length', async () => {
  const r = await client.completions.create({ model: 'm', prompt: 'Say', max_tokens: 3 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.choices[0].text, /^([ab])-0 \1-1 \1-2 $/);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 3);
  const stream = await client.completions.create({ model: 'm', prompt: 'Say @tokens=5', stream: true });
  let text = '', finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.match(text, /^([ab])-0 \1-1 \1-2 \1-3 \1-4 $/);
  assert.equal(finish, 'stop');
});

test('parameters reach the worker', async () => {
  const r = await client.chat.completions.create({
    model: 'm', messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: '@echo' }],
    temperature: 0.25, top_p: 0.5, max_completion_tokens: 17, stop: ['x', 'yz'], seed: 99,
    presence_penalty: 0.5, frequency_penalty: -0.5, logprobs: true, top_logprobs: 2,
    top_k: 7, min_p: 0.125, repetition_penalty: 1.25, user: 'me', store: true, metadata: { k: 'v' } });
  const echo = JSON.parse(r.choices[0].message.reasoning_content ?? r.choices[0].message.content);
  assert.deepEqual({ ...echo, request_id: undefined }, {
    temperature: 0.25, top_p: 0.5, top_k: 7, min_p: 0.125, repetition_penalty: 1.25,
    presence_penalty: 0.5, frequency_penalty: -0.5, seed: 99, max_tokens: 17, ignore_eos: false,
    logprobs: true, top_logprobs: 2, stop: ['x', 'yz'], stop_token_ids: [], prompt_kind: 'chat',
    messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: '@echo' }], resume: [],
    request_id: undefined, n: 0, choice_index: 0 });
  assert.equal(echo.request_id, r.id);
  const lp = r.choices[0].logprobs.content[0];
  assert.equal(lp.logprob, -0.5);
  assert.deepEqual(lp.top_logprobs.map((t) => t.token), ['alt0', 'alt1']);
  const c = await client.completions.create({ model: 'm', prompt: [[5, 6, 7]], max_tokens: 1 });
  assert.equal(c.choices[0].text.length > 0, true);
  const e = await postJson(`${g.url}/v1/completions`, { model: 'm', prompt: [1, 2], max_tokens: 1 });
  assert.equal(e.status, 200);
});

test('SSE framing over curl: chunked events, [DONE] last, keep-alive reuse', async () => {
  const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: '@tokens=4' }] });
  const one = ['-i', '-N', '-H', 'content-type: application/json', '-d', body, `${g.url}/v1/chat/completions`];
  const r = await curl([...one, '--next', ...one]);
  assert.equal(r.code, 0, r.stderr);
  const responses = r.stdout.split(/(?=HTTP\/1\.1 )/);
  assert.equal(responses.length, 2);
  for (const resp of responses) {
    const [head, payload] = resp.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200 OK/);
    assert.match(head, /content-type: text\/event-stream/i);
    assert.match(head, /transfer-encoding: chunked/i);
    const events = sseEvents(payload);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(chunks.map((c) => c.choices[0].delta.reasoning_content ?? '').join('').split(' ').length, 5);
  }
  // curl -w shows it reused one connection for both requests.
  const two = await curl(['-o', '/dev/null', '-w', '%{num_connects}\n', `${g.url}/healthz`, '-o', '/dev/null', `${g.url}/healthz`]);
  assert.deepEqual(two.stdout.trim().split('\n'), ['1', '0']);
});

test('workers found through DNS (--workers-dns NAME:PORT)', async () => {
  const gd = await startGateway([], ['--workers', '', '--workers-dns', `localhost:${w1.port}`, '--dns-refresh', '0.2']);
  try {
    await waitReady(gd, 1);
    const r = await postJson(`${gd.url}/v1/completions`, { model: 'm', prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].text, 'a-0 a-1 ');
  } finally { await stop(gd); }
});

test('n choices and batched prompts, plain and streamed', async () => {
  const chat = await client.chat.completions.create({ model: 'm', n: 3, messages: [{ role: 'user', content: '@tokens=4' }] });
  assert.deepEqual(chat.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of chat.choices) {
    assert.match(c.message.reasoning_content, /^([ab])-0 \1-1 \1-2 \1-3 $/);
    assert.equal(c.finish_reason, 'stop');
  }
  assert.equal(chat.usage.completion_tokens, 12);
  assert.equal(chat.usage.prompt_tokens, 3);  // counted once, not per choice

  const comp = await client.completions.create({ model: 'm', prompt: ['@tokens=2', '@tokens=3'], n: 2 });
  assert.deepEqual(comp.choices.map((c) => c.text.trim().split(' ').length), [2, 2, 3, 3]);
  assert.equal(comp.usage.completion_tokens, 10);

  const stream = await client.chat.completions.create({ model: 'm', n: 2, stream: true,
    stream_options: { include_usage: true }, messages: [{ role: 'user', content: '@think' }] });
  const got = [{ r: '', c: '', roles: 0, finish: null }, { r: '', c: '', roles: 0, finish: null }];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      const g1 = got[ch.index];
      if (ch.delta.role) g1.roles++;
      g1.r += ch.delta.reasoning_content ?? '';
      g1.c += ch.delta.content ?? '';
      if (ch.finish_reason) g1.finish = ch.finish_reason;
    }
  }
  for (const g1 of got) assert.deepEqual(g1, { r: 'Let me think.', c: '\n\nThe answer is 4.', roles: 1, finish: 'stop' });
  assert.equal(usage.completion_tokens, 18);

  // One call carries the n choices, with the request's seed (the worker gives choice k
  // seed + k: checked against a real worker in real_workers.test.mjs); each choice is the
  // message tagged with its index.
  const seeded = await client.completions.create({ model: 'm', prompt: '@echo', n: 2, seed: 10 });
  const echoed = seeded.choices.map((c) => JSON.parse(c.text));
  assert.deepEqual(echoed.map((e) => [e.seed, e.n, e.choice_index, e.request_id]),
    [[10, 2, 0, seeded.id], [10, 2, 1, seeded.id]]);
  // Without one the gateway picks the call's seed, so that a resumed stream samples on.
  const unseeded = await client.completions.create({ model: 'm', prompt: '@echo', n: 2 });
  const seeds = unseeded.choices.map((c) => JSON.parse(c.text).seed);
  assert.ok(seeds.every((x) => typeof x === 'number'), JSON.stringify(seeds));
  assert.equal(seeds[0], seeds[1]);
  // Several prompts: one call each, "<id>-<prompt>".
  const two = await client.completions.create({ model: 'm', prompt: ['@echo', '@echo'], n: 3 });
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(two.choices.map((c) => { const e = JSON.parse(c.text); return [e.request_id, e.n, e.choice_index]; }),
    [0, 1].flatMap((p) => [0, 1, 2].map((k) => [`${two.id}-${p}`, 3, k])));
});
