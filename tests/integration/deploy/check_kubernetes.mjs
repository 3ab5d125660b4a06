// deploy/kubernetes: every manifest parses, validates against the Kubernetes API schemas
// (npm kubernetes-models, @kubernetes-models/prometheus-operator) with no unknown fields
// (strict_fields.mjs), and the fields the stack
// relies on agree with each other: probes, drain timing, GPU requests, the headless Service
// the gateway resolves, ConfigMap keys used as $(VAR), the HPA target, the ServiceMonitors,
// the worker credentials (mTLS files from mounted Secrets) and the NetworkPolicy that lets only
// the gateways reach the workers' gRPC port.
// Usage: node check_kubernetes.mjs [BIN_DIR]  (with BIN_DIR, flags are checked against
// r1-worker --help and r1-gateway --help too).
import fs from "node:fs";
import path from "node:path";
import {
  SOURCE_DIR, check, fail, finish, readYamlDocs, rel, importNodeModule, parseFlags,
  WORKER_FLAGS, GATEWAY_FLAGS, helpFlags,
} from "./common.mjs";
import { unknownFields } from "./strict_fields.mjs";

const dir = path.join(SOURCE_DIR, "deploy/kubernetes");
const binDir = process.argv[2];

// --- parse every file, validate every object against its schema -------------------------
const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
check(files.includes("kustomization.yaml"), "deploy/kubernetes has a kustomization.yaml");
const objects = [];  // {file, obj}
for (const f of files) {
  const docs = readYamlDocs(path.join(dir, f));
  check(docs.length > 0, `${f}: has at least one document`);
  for (const obj of docs) objects.push({ file: f, obj });
}

const modules = {
  "v1": "kubernetes-models/v1/index.js",
  "apps/v1": "kubernetes-models/apps/v1/index.js",
  "policy/v1": "kubernetes-models/policy/v1/index.js",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1/index.js",
  "autoscaling/v2": "kubernetes-models/autoscaling/v2/index.js",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js",
};
const byKind = {};
for (const { file, obj } of objects) {
  if (obj.kind === "Kustomization") continue;
  const where = `${file}: ${obj.kind}/${obj?.metadata?.name}`;
  check(typeof obj.apiVersion === "string" && typeof obj.kind === "string", `${file}: apiVersion and kind`);
  check(typeof obj?.metadata?.name === "string" && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(obj.metadata.name),
    `${where}: metadata.name is a DNS name`);
  const mod = modules[obj.apiVersion];
  if (!check(mod, `${where}: apiVersion ${obj.apiVersion} is one the check knows`)) continue;
  const models = await importNodeModule(mod);
  const Model = models[obj.kind];
  if (!check(Model, `${where}: kind ${obj.kind} exists in ${obj.apiVersion}`)) continue;
  try {
    new Model(obj).validate();
    check(true, where);
  } catch (e) {
    check(false, `${where}: schema: ${e.message.split("\n").slice(0, 4).join(" | ")}`);
  }
  // The schemas accept unknown fields; the API server's strict validation does not.
  const unknown = unknownFields(obj.apiVersion, obj.kind, obj);
  if (unknown) {
    check(unknown.length === 0, `${where}: ${unknown.join("; ")}`);
  } else if (obj.kind === "ServiceMonitor") {
    const specKeys = ["selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit"];
    const epKeys = ["port", "targetPort", "path", "interval", "scrapeTimeout", "scheme", "relabelings", "metricRelabelings", "honorLabels"];
    for (const k of Object.keys(obj.spec ?? {})) check(specKeys.includes(k), `${where}: spec.${k} is a ServiceMonitor field`);
    for (const ep of obj.spec?.endpoints ?? []) {
      for (const k of Object.keys(ep)) check(epKeys.includes(k), `${where}: endpoints[].${k} is a ServiceMonitor endpoint field`);
    }
  }
  (byKind[obj.kind] ??= []).push(obj);
}
const find = (kind, name) => (byKind[kind] ?? []).find((o) => o.metadata.name === name);

// --- kustomization -------------------------------------------------------------------------
const kust = objects.find((o) => o.obj.kind === "Kustomization")?.obj;
if (!kust) fail("kustomization.yaml has no Kustomization");
check(kust.apiVersion === "kustomize.config.k8s.io/v1beta1", "kustomization apiVersion");
const resources = kust.resources ?? [];
for (const r of resources) check(fs.existsSync(path.join(dir, r)), `kustomization resource ${r} exists`);
for (const f of files) {
  if (f !== "kustomization.yaml") check(resources.includes(f), `kustomization lists ${f}`);
}
const namespace = kust.namespace;
check(typeof namespace === "string" && find("Namespace", namespace), "kustomization's namespace is created by namespace.yaml");

// --- shared helpers ----------------------------------------------------------------------
const config = find("ConfigMap", "r1serve-flags");
check(config, "ConfigMap r1serve-flags exists");
const configData = config?.data ?? {};
const labelsMatch = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v) && Object.keys(selector ?? {}).length > 0;

function checkDeployment(name, program, contractFlags) {
  const d = find("Deployment", name);
  if (!check(d, `Deployment ${name} exists`)) return null;
  const tpl = d.spec.template;
  check(labelsMatch(d.spec.selector.matchLabels, tpl.metadata.labels), `${name}: selector matches the pod labels`);
  const c = tpl.spec.containers[0];
  check(c.command?.[0]?.endsWith(`/${program}`), `${name}: runs ${program}`);
  const flags = parseFlags(c.args ?? []);
  // Every flag used is a flag of the program (the contract's list, and --help when built).
  const help = helpFlags(binDir ? path.join(binDir, program) : null);
  for (const f of flags.keys()) {
    check(contractFlags.includes(f) || (help && help.has(f)), `${name}: --${f} is a ${program} flag of the contract`);
    if (help) check(help.has(f), `${name}: --${f} is in ${program} --help`);
  }
  // Every $(VAR) is a key of the ConfigMap the container reads.
  const fromConfig = (c.envFrom ?? []).some((e) => e.configMapRef?.name === "r1serve-flags");
  for (const a of c.args ?? []) {
    for (const m of String(a).matchAll(/\$\(([A-Z0-9_]+)\)/g)) {
      check(fromConfig && m[1] in configData, `${name}: $(${m[1]}) is a key of ConfigMap r1serve-flags`);
    }
  }
  return { d, c, flags };
}

function portNamed(container, name) {
  return (container.ports ?? []).find((p) => p.name === name);
}

// Each flag names a file inside a volume mounted from a Secret.
function checkSecretFiles(name, d, c, flags, flagNames) {
  const volumes = d.spec.template.spec.volumes ?? [];
  for (const f of flagNames) {
    const file = flags.get(f);
    if (!check(file, `${name}: --${f} is given`)) continue;
    const mount = (c.volumeMounts ?? []).find((m) => file.startsWith(`${m.mountPath}/`));
    const vol = mount && volumes.find((v) => v.name === mount.name);
    check(vol?.secret?.secretName, `${name}: --${f}=${file} is in a volume mounted from a Secret`);
  }
}

// --- worker ----------------------------------------------------------------------------
const worker = checkDeployment("r1-worker", "r1-worker", WORKER_FLAGS);
if (worker) {
  const { d, c, flags } = worker;
  const grpc = portNamed(c, "grpc");
  check(grpc, "r1-worker: container port named grpc");
  check(flags.get("listen")?.endsWith(`:${grpc?.containerPort}`), "r1-worker: --listen uses the grpc port");
  const metrics = portNamed(c, "metrics");
  check(metrics && flags.get("metrics-listen")?.endsWith(`:${metrics.containerPort}`),
    "r1-worker: --metrics-listen uses the metrics port");
  check(String(c.resources?.limits?.["nvidia.com/gpu"]) === "1", "r1-worker: limits nvidia.com/gpu: 1");
  check(String(c.resources?.requests?.["nvidia.com/gpu"] ?? c.resources?.limits?.["nvidia.com/gpu"]) === "1",
    "r1-worker: requests one GPU");
  // Credentials: the gRPC port speaks mTLS with files from a Secret.
  checkSecretFiles("r1-worker", d, c, flags, ["tls-cert", "tls-key", "tls-client-ca"]);
  // The kubelet's grpc probes cannot speak TLS: with TLS on, the probes connect to the port.
  for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
    if (flags.has("tls-cert")) {
      check(c[probe]?.tcpSocket?.port === grpc?.containerPort,
        `r1-worker: ${probe} is a tcpSocket probe on the grpc port (TLS is on)`);
    } else {
      check(c[probe]?.grpc?.port === grpc?.containerPort,
        `r1-worker: ${probe} is a grpc (grpc.health.v1) probe on the grpc port`);
    }
  }
  // Drain timing: preStop pause + --drain-timeout must fit in terminationGracePeriodSeconds.
  const drain = Number(flags.get("drain-timeout"));
  check(Number.isFinite(drain) && drain > 0, "r1-worker: --drain-timeout given as a number in the manifest");
  const pre = c.lifecycle?.preStop;
  check(pre, "r1-worker: has a preStop hook");
  let preSeconds = 0;
  if (pre?.exec?.command) {
    const cmd = pre.exec.command.join(" ");
    const m = cmd.match(/sleep\s+(\d+)/);
    check(m, `r1-worker: preStop exec is a sleep (${cmd})`);
    preSeconds = m ? Number(m[1]) : 0;
  } else if (pre?.sleep) {
    preSeconds = Number(pre.sleep.seconds);
  }
  const grace = d.spec.template.spec.terminationGracePeriodSeconds;
  check(grace >= preSeconds + drain + 5,
    `r1-worker: terminationGracePeriodSeconds ${grace} >= preStop ${preSeconds} + drain ${drain} + 5`);
  const comment = fs.readFileSync(path.join(dir, "worker-deployment.yaml"), "utf8");
  check(comment.includes(`--drain-timeout=${drain}`) && comment.includes(`(${grace})`),
    "worker-deployment.yaml's comment states the drain timeout and the grace period it uses");
}

// --- worker headless Service, and the gateway's --workers-dns pointing at it -------------
const headless = (byKind.Service ?? []).find((s) => s.spec.clusterIP === "None" &&
  labelsMatch(s.spec.selector, worker?.d.spec.template.metadata.labels));
if (check(headless, "a headless Service (clusterIP: None) for the workers")) {
  check(labelsMatch(headless.spec.selector, worker?.d.spec.template.metadata.labels),
    "headless Service selects the worker pods");
  const port = headless.spec.ports.find((p) => p.name === "grpc");
  check(port, "headless Service has a grpc port");
  check(headless.spec.publishNotReadyAddresses !== true, "headless Service lists ready workers only");
  const gateway = checkDeployment("r1-gateway", "r1-gateway", GATEWAY_FLAGS);
  if (gateway) {
    const { c, flags } = gateway;
    let dns = flags.get("workers-dns") ?? "";
    dns = dns.replace(/\$\(([A-Z0-9_]+)\)/g, (_, k) => configData[k] ?? "");
    const want = `${headless.metadata.name}.${namespace}.svc.cluster.local:${port?.port}`;
    check(dns === want, `r1-gateway: --workers-dns is ${want} (got ${dns})`);
    const http = portNamed(c, "http");
    check(http && flags.get("listen")?.endsWith(`:${http.containerPort}`), "r1-gateway: --listen uses the http port");
    const gm = portNamed(c, "metrics");
    check(gm && flags.get("metrics-listen")?.endsWith(`:${gm.containerPort}`),
      "r1-gateway: --metrics-listen uses the metrics port (not the API port)");
    // The worker credentials' other side: the CA and a client certificate from a Secret, and
    // the name the workers' certificates carry (they are dialled by pod IP).
    checkSecretFiles("r1-gateway", gateway.d, c, flags, ["worker-tls-ca", "worker-tls-cert", "worker-tls-key"]);
    check(flags.get("worker-tls-server-name"), "r1-gateway: --worker-tls-server-name is set (workers are dialled by IP)");
    check(svcPorts(find("Service", "r1-gateway")).every((p) => p.targetPort !== "metrics" && p.targetPort !== gm?.containerPort),
      "Service r1-gateway (the front door) does not expose the metrics port");
    check(c.readinessProbe?.httpGet?.path === "/readyz", "r1-gateway: readiness probe GET /readyz");
    check(c.livenessProbe?.httpGet?.path === "/healthz", "r1-gateway: liveness probe GET /healthz");
    check(c.resources?.requests?.cpu, "r1-gateway: requests CPU (the HPA's utilization needs it)");
    const svc = find("Service", "r1-gateway");
    check(svc && labelsMatch(svc.spec.selector, gateway.d.spec.template.metadata.labels),
      "Service r1-gateway selects the gateway pods");
  }
}

// --- NetworkPolicy: only the gateway pods reach the workers' gRPC port ------------------------
function svcPorts(svc) { return svc?.spec?.ports ?? []; }
{
  const workerLabels = worker?.d.spec.template.metadata.labels;
  const gatewayLabels = find("Deployment", "r1-gateway")?.spec.template.metadata.labels;
  const grpcPort = worker && portNamed(worker.c, "grpc");
  const policies = (byKind.NetworkPolicy ?? []).filter((p) => labelsMatch(p.spec.podSelector?.matchLabels, workerLabels));
  check(policies.length >= 1, "a NetworkPolicy selects the worker pods");
  for (const p of policies) {
    check((p.spec.policyTypes ?? []).includes("Ingress"), `NetworkPolicy ${p.metadata.name}: restricts ingress`);
    for (const rule of p.spec.ingress ?? []) {
      const ports = rule.ports ?? [];
      const coversGrpc = ports.length === 0 ||
        ports.some((x) => x.port === "grpc" || x.port === grpcPort?.containerPort);
      if (!coversGrpc) continue;
      const from = rule.from ?? [];
      check(from.length > 0 && from.every((f) => !f.namespaceSelector && !f.ipBlock &&
        labelsMatch(f.podSelector?.matchLabels, gatewayLabels)),
        `NetworkPolicy ${p.metadata.name}: the grpc port admits the gateway pods only`);
    }
  }
}

// --- HPA ---------------------------------------------------------------------------------
const hpa = (byKind.HorizontalPodAutoscaler ?? [])[0];
if (check(hpa, "a HorizontalPodAutoscaler")) {
  const t = hpa.spec.scaleTargetRef;
  check(t.kind === "Deployment" && t.name === "r1-gateway" && t.apiVersion === "apps/v1", "HPA scales Deployment r1-gateway");
  check(hpa.spec.minReplicas >= 1 && hpa.spec.maxReplicas >= hpa.spec.minReplicas, "HPA replica bounds");
}

// --- ServiceMonitors select a Service and name one of its ports ----------------------------
const monitors = byKind.ServiceMonitor ?? [];
check(monitors.length >= 2, "ServiceMonitors for the workers and the gateway");
for (const m of monitors) {
  const svc = (byKind.Service ?? []).find((s) => labelsMatch(m.spec.selector.matchLabels, s.metadata.labels));
  if (!check(svc, `ServiceMonitor ${m.metadata.name} selects a Service`)) continue;
  for (const ep of m.spec.endpoints) {
    check(svc.spec.ports.some((p) => p.name === ep.port), `ServiceMonitor ${m.metadata.name}: port ${ep.port} is on Service ${svc.metadata.name}`);
    check(ep.path === "/metrics", `ServiceMonitor ${m.metadata.name}: path /metrics`);
  }
}

// --- PVC used by the workers exists ---------------------------------------------------------
for (const v of worker?.d.spec.template.spec.volumes ?? []) {
  if (v.persistentVolumeClaim) check(find("PersistentVolumeClaim", v.persistentVolumeClaim.claimName), `PVC ${v.persistentVolumeClaim.claimName} is defined`);
}

finish("deploy/kubernetes");
