// Shared by the deploy checks: YAML loading through tests/node's packages, the metric and
// flag names of the contract, and metric-name extraction from PromQL.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

export const SOURCE_DIR = process.env.R1_SOURCE_DIR ??
  path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
export const NODE_MODULES = path.join(SOURCE_DIR, "tests/node/node_modules");

const requireFromNode = createRequire(path.join(SOURCE_DIR, "tests/node/package.json"));

export function loadYamlPackage() {
  try {
    return requireFromNode("yaml");
  } catch (e) {
    fail(`the npm package 'yaml' is missing: run (cd tests/node && npm ci) (${e.message})`);
  }
}

// ESM-only packages (kubernetes-models) are imported by file path.
export async function importNodeModule(rel) {
  const file = path.join(NODE_MODULES, rel);
  if (!fs.existsSync(file)) fail(`${file} is missing: run (cd tests/node && npm ci)`);
  return import(pathToFileURL(file).href);
}

// Every YAML document of a file (comments and empty documents dropped).
export function readYamlDocs(file) {
  const YAML = loadYamlPackage();
  const text = fs.readFileSync(file, "utf8");
  const docs = YAML.parseAllDocuments(text);
  const out = [];
  for (const d of docs) {
    if (d.errors.length) fail(`${rel(file)}: YAML error: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

export function rel(file) {
  return path.relative(SOURCE_DIR, file);
}

let failures = 0;
let checks = 0;
export function check(cond, message) {
  checks++;
  if (!cond) {
    failures++;
    console.error(`FAIL: ${message}`);
  }
  return cond;
}
export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
export function finish(name) {
  if (failures > 0) {
    console.error(`${name}: ${failures} of ${checks} checks failed`);
    process.exit(1);
  }
  console.log(`${name}: ${checks} checks passed`);
}

// The metric names of CONTRACT (the shared notes), which docs/operations.md must list too.
export const WORKER_METRICS = {
  r1_worker_time_to_first_token_seconds: "histogram",
  r1_worker_inter_token_latency_seconds: "histogram",
  r1_worker_e2e_latency_seconds: "histogram",
  r1_worker_queue_time_seconds: "histogram",
  r1_worker_running_sequences: "gauge",
  r1_worker_waiting_sequences: "gauge",
  r1_worker_kv_cache_usage_ratio: "gauge",
  r1_worker_device_memory_used_bytes: "gauge",
  r1_worker_device_memory_total_bytes: "gauge",
  r1_worker_device_memory_allocated_bytes: "gauge",
  r1_worker_device_memory_reserved_bytes: "gauge",
  r1_worker_kv_cache_bytes: "gauge",
  r1_worker_prompt_tokens_total: "counter",
  r1_worker_generation_tokens_total: "counter",
  r1_worker_preemptions_total: "counter",
  r1_worker_requests_total: "counter",
  r1_worker_rejected_requests_total: "counter",
  r1_worker_prefix_cache_queries_total: "counter",
  r1_worker_prefix_cache_hits_total: "counter",
  r1_worker_engine_stalled: "gauge",
};
export const GATEWAY_METRICS = {
  r1_gateway_requests_total: "counter",
  r1_gateway_time_to_first_token_seconds: "histogram",
  r1_gateway_e2e_latency_seconds: "histogram",
  r1_gateway_upstream_attempts_total: "counter",
  r1_gateway_retries_total: "counter",
  r1_gateway_active_streams: "gauge",
  r1_gateway_breaker_state: "gauge",
  r1_gateway_worker_healthy: "gauge",
  r1_gateway_rejected_requests_total: "counter",
  r1_gateway_open_connections: "gauge",
  r1_gateway_stream_resumes_total: "counter",
  r1_gateway_ejections_total: "counter",
  r1_gateway_worker_suspect_total: "counter",
  r1_gateway_panic_mode: "gauge",
};
export const ALL_METRICS = { ...WORKER_METRICS, ...GATEWAY_METRICS };

// Metric names documented in docs/operations.md's tables (first column, in backticks).
export function documentedMetrics() {
  const text = fs.readFileSync(path.join(SOURCE_DIR, "docs/operations.md"), "utf8");
  const names = new Set();
  for (const m of text.matchAll(/^\|\s*`(r1_[a-z0-9_]+)`\s*\|/gm)) names.add(m[1]);
  return names;
}

// The series names a PromQL expression uses that are ours (r1_...), with histogram suffixes
// mapped back to the histogram's name. Returns {base: Set, unknown: [names not in the list]}.
export function metricsInPromQL(expr) {
  const base = new Set();
  const unknown = [];
  // Drop string literals (label values like "5..") so that they are not read as names.
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (const m of bare.matchAll(/\b(r1_[a-zA-Z0-9_:]+)/g)) {
    const name = m[1];
    if (ALL_METRICS[name]) {
      base.add(name);
      continue;
    }
    const h = name.match(/^(.*)_(bucket|sum|count)$/);
    if (h && ALL_METRICS[h[1]] === "histogram") {
      base.add(h[1]);
      continue;
    }
    unknown.push(name);
  }
  return { base, unknown };
}

// The flags of CONTRACT for each program (the programs may have more).
export const WORKER_FLAGS = ["model", "listen", "device", "dtype", "metrics-listen",
  "drain-timeout", "max-running", "max-waiting", "max-model-len", "kv-cache-memory",
  "block-size", "prefill-chunk", "memory-limit", "chat-template", "served-model-name",
  "tls-cert", "tls-key", "tls-client-ca", "auth-token-file"];
export const GATEWAY_FLAGS = ["listen", "workers", "workers-dns", "dns-refresh",
  "api-key-file", "max-body-bytes", "max-concurrent-requests", "breaker-memory-threshold",
  "max-attempts", "retry-base-ms", "retry-cap-ms", "no-reasoning-split", "metrics-listen",
  "lingering-time", "worker-tls-ca", "worker-tls-cert", "worker-tls-key",
  "worker-tls-server-name", "worker-token-file"];

// Flags a program's --help lists, when the program is built (null otherwise).
import { spawnSync } from "node:child_process";
export function helpFlags(binary) {
  if (!binary || !fs.existsSync(binary)) return null;
  const r = spawnSync(binary, ["--help"], { encoding: "utf8", timeout: 20000 });
  if (r.status !== 0) return null;
  return new Set([...r.stdout.matchAll(/^\s*--([a-z0-9-]+)/gm)].map((m) => m[1]));
}

// "--name=value" / "--name value" pairs of an argument list.
export function parseFlags(args) {
  const out = new Map();
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    if (!a.startsWith("--")) continue;
    const eq = a.indexOf("=");
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < args.length && !String(args[i + 1]).startsWith("--")) out.set(a.slice(2), String(args[++i]));
    else out.set(a.slice(2), "true");
  }
  return out;
}
