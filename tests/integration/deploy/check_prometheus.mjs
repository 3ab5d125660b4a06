// deploy/prometheus: the alert rules and scrape configs. With promtool (Debian package
// 'prometheus') on PATH: promtool check rules / check config and the rule unit tests in
// alerts_test.yml. Always: our own checks of the files' shape, the alerts the stack needs,
// and that every metric the rules use is a documented r1serve metric.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import {
  SOURCE_DIR, check, finish, readYamlDocs, metricsInPromQL, documentedMetrics, ALL_METRICS,
} from "./common.mjs";

const dir = path.join(SOURCE_DIR, "deploy/prometheus");

// The documented list is the contract's list.
const documented = documentedMetrics();
for (const name of Object.keys(ALL_METRICS)) check(documented.has(name), `docs/operations.md lists ${name}`);
for (const name of documented) check(ALL_METRICS[name], `docs/operations.md's ${name} is a contract metric`);

// promtool, when installed.
const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8" });
if (promtool.error) {
  console.log("promtool not found: own checks only (apt-get install prometheus for the full check)");
} else {
  for (const args of [["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                      ["test", "rules", "alerts_test.yml"]]) {
    const r = spawnSync("promtool", args, { cwd: dir, encoding: "utf8", timeout: 60000 });
    check(r.status === 0, `promtool ${args.join(" ")}: ${(r.stdout + r.stderr).trim().split("\n").slice(-6).join(" | ")}`);
  }
}

// Alert rules.
const [rules] = readYamlDocs(path.join(dir, "alerts.yml"));
const alerts = new Map();
for (const g of rules.groups ?? []) {
  check(typeof g.name === "string", "rule group has a name");
  for (const r of g.rules ?? []) {
    check(typeof r.alert === "string" && typeof r.expr === "string", `rule ${r.alert}: alert and expr`);
    alerts.set(r.alert, r);
    check(["warning", "critical"].includes(r.labels?.severity), `${r.alert}: severity warning|critical`);
    check(r.annotations?.summary && r.annotations?.description, `${r.alert}: summary and description`);
    check(/^\d+[smh]$/.test(r.for ?? ""), `${r.alert}: a 'for' duration`);
    const { base, unknown } = metricsInPromQL(r.expr);
    check(base.size > 0, `${r.alert}: uses an r1serve metric`);
    check(unknown.length === 0, `${r.alert}: unknown metric names ${unknown.join(", ")}`);
    for (const m of base) check(documented.has(m), `${r.alert}: ${m} is documented`);
  }
}
// The alerts issue 7 asks for, by the metric each must watch.
const needs = {
  "TTFT p99": (e) => /histogram_quantile\(0\.99/.test(e) && e.includes("time_to_first_token_seconds_bucket"),
  "breaker open": (e) => e.includes("r1_gateway_breaker_state") && /==\s*2/.test(e),
  "error rate": (e) => e.includes("r1_gateway_requests_total") && e.includes("5.."),
  "queue backing up": (e) => e.includes("r1_worker_waiting_sequences"),
  "KV cache nearly full": (e) => e.includes("r1_worker_kv_cache_usage_ratio"),
};
for (const [what, test] of Object.entries(needs)) {
  check([...alerts.values()].some((r) => test(r.expr)), `an alert for ${what}`);
}
// Every alert has a case in the promtool unit tests.
const [unit] = readYamlDocs(path.join(dir, "alerts_test.yml"));
const tested = new Set(unit.tests.flatMap((t) => (t.alert_rule_test ?? []).map((a) => a.alertname)));
for (const name of alerts.keys()) check(tested.has(name), `alerts_test.yml tests ${name}`);

// Scrape configs: both jobs, rule file included; the Kubernetes one keeps the right ports.
for (const f of ["prometheus.yml", "prometheus-kubernetes.yml"]) {
  const [cfg] = readYamlDocs(path.join(dir, f));
  check((cfg.rule_files ?? []).includes("alerts.yml"), `${f}: loads alerts.yml`);
  check(Array.isArray(cfg.scrape_configs) && cfg.scrape_configs.length > 0, `${f}: scrape_configs`);
  for (const s of cfg.scrape_configs ?? []) {
    check(typeof s.job_name === "string", `${f}: job_name`);
    check((s.metrics_path ?? "/metrics") === "/metrics", `${f}: ${s.job_name} scrapes /metrics`);
    check(s.static_configs || s.kubernetes_sd_configs, `${f}: ${s.job_name} has targets`);
  }
}
const [kcfg] = readYamlDocs(path.join(dir, "prometheus-kubernetes.yml"));
const keep = kcfg.scrape_configs[0].relabel_configs.find((r) => r.action === "keep");
const re = new RegExp(`^(?:${keep.regex})$`);
check(re.test("r1-worker;metrics") && re.test("r1-gateway;metrics") && !re.test("r1-worker;grpc") &&
  !re.test("r1-gateway;http"),
  "prometheus-kubernetes.yml keeps the metrics ports of the workers and the gateways only");
const [gw] = readYamlDocs(path.join(SOURCE_DIR, "deploy/kubernetes/gateway-deployment.yaml"));
check(gw.spec.template.spec.containers[0].ports.some((p) => p.name === "metrics"),
  "the gateway's metrics port (--metrics-listen) is named metrics");

finish("deploy/prometheus");
