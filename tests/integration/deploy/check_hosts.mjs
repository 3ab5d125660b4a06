// deploy/systemd and deploy/docker. systemd: with systemd-analyze on PATH, `verify` finds
// nothing but the missing installed binaries; always: the units' flags are program flags,
// worker N gets GPU N and its own ports, the stop timeout covers the drain. docker: the
// Dockerfiles' stages and targets exist (they cannot be built here: no container runtime).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { SOURCE_DIR, check, finish, parseFlags, WORKER_FLAGS, GATEWAY_FLAGS, helpFlags } from "./common.mjs";

const binDir = process.argv[2];
const sd = path.join(SOURCE_DIR, "deploy/systemd");

// A unit file as {section: {key: [values]}}, with line continuations joined.
function readUnit(file) {
  const text = fs.readFileSync(file, "utf8").replace(/\\\n\s*/g, " ");
  const out = {};
  let section = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const s = line.match(/^\[(.+)\]$/);
    if (s) {
      section = out[s[1]] = out[s[1]] ?? {};
      continue;
    }
    const eq = line.indexOf("=");
    check(section && eq > 0, `${path.basename(file)}: '${line}' is KEY=VALUE in a section`);
    if (!section || eq <= 0) continue;
    (section[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

function checkExec(unit, name, program, contract) {
  const exec = unit.Service?.ExecStart?.[0] ?? "";
  const words = exec.split(/\s+/);
  check(words[0] === `/usr/local/bin/${program}`, `${name}: ExecStart runs /usr/local/bin/${program}`);
  const flags = parseFlags(words.slice(1).filter((w) => !w.startsWith("$")));
  const help = helpFlags(binDir ? path.join(binDir, program) : null);
  for (const f of flags.keys()) {
    check(contract.includes(f), `${name}: --${f} is a ${program} flag of the contract`);
    if (help) check(help.has(f), `${name}: --${f} is in ${program} --help`);
  }
  return flags;
}

const worker = readUnit(path.join(sd, "r1-worker@.service"));
const wflags = checkExec(worker, "r1-worker@.service", "r1-worker", WORKER_FLAGS);
check(worker.Service.Environment?.some((e) => e === "CUDA_VISIBLE_DEVICES=%i"), "worker N sees GPU N only");
check(wflags.get("listen")?.includes("%i") && wflags.get("metrics-listen")?.includes("%i"), "worker N has ports of its own");
check(wflags.get("metrics-listen")?.endsWith(":1909%i"), "worker N's metrics port is 1909N (deploy/prometheus/prometheus.yml)");
const drain = Number(wflags.get("drain-timeout"));
const stop = Number(worker.Service.TimeoutStopSec?.[0]);
check(drain > 0 && stop >= drain + 5, `TimeoutStopSec ${stop} >= --drain-timeout ${drain} + 5`);
check(worker.Service.KillSignal?.[0] === "SIGTERM", "worker stops on SIGTERM (which starts the drain)");
check(worker.Install?.WantedBy?.includes("r1serve.target"), "worker instances belong to r1serve.target");

const gateway = readUnit(path.join(sd, "r1-gateway.service"));
checkExec(gateway, "r1-gateway.service", "r1-gateway", GATEWAY_FLAGS);
const target = readUnit(path.join(sd, "r1serve.target"));
check(target.Unit?.Wants?.includes("r1-gateway.service"), "r1serve.target wants the gateway");

// The env file sets every ${VAR} / $VAR the units use, and its workers match worker ports.
const env = Object.fromEntries(fs.readFileSync(path.join(sd, "r1serve.env"), "utf8").split("\n")
  .filter((l) => l && !l.startsWith("#")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
for (const [name, unit] of [["r1-worker@.service", worker], ["r1-gateway.service", gateway]]) {
  for (const m of (unit.Service.ExecStart?.[0] ?? "").matchAll(/\$\{?([A-Z0-9_]+)\}?/g)) {
    check(m[1] in env, `${name}: ${m[1]} is set in r1serve.env`);
  }
}
for (const [key, program, contract] of [["R1_WORKER_ARGS", "r1-worker", WORKER_FLAGS], ["R1_GATEWAY_ARGS", "r1-gateway", GATEWAY_FLAGS]]) {
  const help = helpFlags(binDir ? path.join(binDir, program) : null);
  for (const f of parseFlags((env[key] ?? "").split(/\s+/)).keys()) {
    check(contract.includes(f) || (help && help.has(f)), `r1serve.env ${key}: --${f} is a ${program} flag`);
    if (help) check(help.has(f), `r1serve.env ${key}: --${f} is in ${program} --help`);
  }
}
for (const w of (env.R1_WORKERS ?? "").split(",")) check(/^127\.0\.0\.1:5005\d$/.test(w), `R1_WORKERS entry ${w} is a worker@N port`);
const prom = fs.readFileSync(path.join(SOURCE_DIR, "deploy/prometheus/prometheus.yml"), "utf8");
check(prom.includes("127.0.0.1:19090"), "prometheus.yml scrapes worker 0's metrics port");

// systemd-analyze verify, when present.
const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
if (analyze.error) {
  console.log("systemd-analyze not found: own checks only");
} else {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "r1-units-"));
  for (const f of ["r1-worker@.service", "r1-gateway.service", "r1serve.target"]) {
    fs.copyFileSync(path.join(sd, f), path.join(tmp, f));
  }
  fs.copyFileSync(path.join(sd, "r1-worker@.service"), path.join(tmp, "r1-worker@0.service"));
  const r = spawnSync("systemd-analyze", ["verify", "--man=no", "r1-worker@0.service", "r1-gateway.service", "r1serve.target"],
    { cwd: tmp, encoding: "utf8", timeout: 60000 });
  const problems = (r.stdout + r.stderr).split("\n").filter((l) => l.trim() &&
    !/Command \/usr\/local\/bin\/r1-(worker|gateway) is not executable/.test(l) &&
    !/Failed to prepare filename|Unit .* not found|Cannot add dependency job/.test(l));
  check(problems.length === 0, `systemd-analyze verify: ${problems.join(" | ")}`);
  fs.rmSync(tmp, { recursive: true });
}

// Dockerfiles: stages referenced exist, targets built exist in the tree's CMake files.
const cmakeText = spawnSync("grep", ["-rhoE", "add_executable\\((r1-[a-z]+)", "--include=CMakeLists.txt", SOURCE_DIR],
  { encoding: "utf8" }).stdout;
const programs = new Set([...cmakeText.matchAll(/add_executable\((r1-[a-z]+)/g)].map((m) => m[1]));
for (const f of ["Dockerfile.cpu", "Dockerfile.cuda"]) {
  const text = fs.readFileSync(path.join(SOURCE_DIR, "deploy/docker", f), "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  const stages = new Set();
  let froms = 0;
  for (const l of lines) {
    const word = l.trim().split(/\s+/)[0];
    check(["FROM", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "CMD", "ENTRYPOINT", "LABEL"].includes(word),
      `${f}: '${word}' is a Dockerfile instruction`);
    const from = l.match(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i);
    if (from) {
      froms++;
      check(from[1].includes(":") || stages.has(from[1]), `${f}: FROM ${from[1]} is pinned to a tag or is an earlier stage`);
      if (from[2]) stages.add(from[2]);
    }
    const copy = l.match(/COPY\s+--from=(\S+)/);
    if (copy) check(stages.has(copy[1]), `${f}: COPY --from=${copy[1]} names an earlier stage`);
    const build = l.match(/--target\s+((?:r1-[a-z]+\s*)+)/);
    if (build) {
      for (const t of build[1].trim().split(/\s+/)) {
        check(programs.has(t), `${f}: target ${t} is an add_executable in the tree`);
      }
    }
  }
  check(froms >= 2, `${f}: a build stage and a runtime stage`);
  check(fs.existsSync(path.join(SOURCE_DIR, "deploy/docker", `${f}.dockerignore`)), `${f}.dockerignore exists`);
}
finish("deploy/systemd and deploy/docker");
