// deploy/grafana: the dashboard JSON parses, its panels are well formed, every PromQL
// expression uses only documented r1serve metrics, and it shows what issue 7 asks for.
import fs from "node:fs";
import path from "node:path";
import { SOURCE_DIR, check, finish, fail, metricsInPromQL, documentedMetrics, readYamlDocs } from "./common.mjs";

const file = path.join(SOURCE_DIR, "deploy/grafana/r1serve-dashboard.json");
let dash;
try {
  dash = JSON.parse(fs.readFileSync(file, "utf8"));
} catch (e) {
  fail(`${file}: ${e.message}`);
}
const documented = documentedMetrics();
check(dash.title && dash.uid, "dashboard has a title and a uid");
check(dash.templating?.list?.some((v) => v.type === "datasource" && v.query === "prometheus" && v.name === "datasource"),
  "dashboard has a Prometheus datasource variable named datasource");
const ids = new Set();
const used = new Set();
let exprs = 0;
for (const p of dash.panels ?? []) {
  check(Number.isInteger(p.id) && !ids.has(p.id), `panel ${p.title}: unique id`);
  ids.add(p.id);
  const g = p.gridPos ?? {};
  check([g.x, g.y, g.w, g.h].every(Number.isInteger) && g.x + g.w <= 24, `panel ${p.title}: gridPos inside 24 columns`);
  if (p.type === "row") continue;
  check(p.datasource?.uid === "${datasource}", `panel ${p.title}: uses the datasource variable`);
  check((p.targets ?? []).length > 0, `panel ${p.title}: has queries`);
  const refs = new Set();
  for (const t of p.targets ?? []) {
    exprs++;
    check(!refs.has(t.refId), `panel ${p.title}: unique refId ${t.refId}`);
    refs.add(t.refId);
    const { base, unknown } = metricsInPromQL(t.expr ?? "");
    check(base.size > 0, `panel ${p.title}: '${t.expr}' uses an r1serve metric`);
    check(unknown.length === 0, `panel ${p.title}: unknown metric names ${unknown.join(", ")}`);
    for (const m of base) {
      check(documented.has(m), `panel ${p.title}: ${m} is documented in docs/operations.md`);
      used.add(m);
    }
    // Balanced parentheses and brackets: a cheap guard against broken PromQL.
    let depth = 0;
    for (const ch of t.expr) {
      if ("([{".includes(ch)) depth++;
      if (")]}".includes(ch)) depth--;
      if (depth < 0) break;
    }
    check(depth === 0, `panel ${p.title}: balanced brackets in '${t.expr}'`);
  }
}
check(exprs >= 10, "dashboard has at least ten queries");
// What the dashboard must show (issue 7), by the metric that shows it.
const needs = {
  throughput: ["r1_gateway_requests_total", "r1_worker_generation_tokens_total"],
  "time to first token": ["r1_gateway_time_to_first_token_seconds"],
  "inter-token latency": ["r1_worker_inter_token_latency_seconds"],
  "queue and running": ["r1_worker_waiting_sequences", "r1_worker_running_sequences"],
  "KV-cache use": ["r1_worker_kv_cache_usage_ratio"],
  "device memory": ["r1_worker_device_memory_used_bytes", "r1_worker_device_memory_total_bytes"],
  retries: ["r1_gateway_retries_total"],
  "breaker state per worker": ["r1_gateway_breaker_state"],
  "error rates": ["r1_gateway_rejected_requests_total", "r1_worker_rejected_requests_total", "r1_worker_requests_total"],
};
for (const [what, metrics] of Object.entries(needs)) {
  for (const m of metrics) check(used.has(m), `dashboard shows ${what} (${m})`);
}
const ttft = (dash.panels ?? []).filter((p) => (p.targets ?? []).some((t) => /time_to_first_token_seconds_bucket/.test(t.expr)));
for (const q of ["0.5", "0.9", "0.99"]) {
  check(ttft.some((p) => p.targets.some((t) => t.expr.includes(`histogram_quantile(${q},`))), `TTFT p${Math.round(q * 100)} is plotted`);
}
// Provisioning files parse.
for (const f of ["provisioning/dashboards/r1serve.yml", "provisioning/datasources/prometheus.yml"]) {
  const [doc] = readYamlDocs(path.join(SOURCE_DIR, "deploy/grafana", f));
  check(doc?.apiVersion === 1, `${f}: apiVersion 1`);
}
finish("deploy/grafana");
