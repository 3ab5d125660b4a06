#!/usr/bin/env python3
"""Routing benchmark: the gateway's --routing policies side by side on real CPU workers.

For each round, workload and policy it starts fresh workers (cold caches) and a gateway with
that policy, runs the workload with a fixed number of concurrent clients, and records each
request's time to first token (first SSE chunk), the run's throughput, and the workers' own
prefix-cache hit rate (r1_worker_prefix_cache_hits_total / _queries_total, in tokens).
Rounds interleave the policies so that a busy machine hurts them alike; the table shows the
median over rounds of each figure.

Workloads (token-id prompts, so any checkpoint works, with or without a tokenizer):
  shared   --prefixes long shared prefixes (system prompts, conversation histories) of
           --prefix-len tokens; each request is one of them plus its own --suffix-len tokens.
  unique   every request a prompt of its own, of the same total length.

  build/bin/r1-mkmodel --preset d128-test --dtype float32 --out /tmp/r1-d128
  bench/routing_bench.py --bin build/bin --model /tmp/r1-d128
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, pattern, log, timeout=300):
    """Starts cmd; returns (process, port) once its stdout matches pattern (group 1: port)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    end = time.time() + timeout
    while time.time() < end:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{cmd[0]} exited: see {log.name}")
        m = re.search(pattern, line)
        if m:
            threading.Thread(target=p.stdout.read, daemon=True).start()  # drain
            return p, int(m.group(1))
    raise RuntimeError(f"{cmd[0]} did not start")


def scrape(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total


def one_request(port, model, prompt, max_tokens):
    """Streams one completion; returns (ttft_s, e2e_s, completion_tokens)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
                       "ignore_eos": True, "temperature": 0,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    c.request("POST", "/v1/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]}")
    ttft, tokens, buf = None, 0, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        if ttft is None:
            ttft = time.monotonic() - t0
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            data = event[len(b"data: "):]
            if data == b"[DONE]":
                continue
            e = json.loads(data)
            if "error" in e:
                raise RuntimeError(f"stream error: {e}")
            if e.get("usage"):
                tokens = e["usage"]["completion_tokens"]
    return ttft, time.monotonic() - t0, tokens


def workload(kind, a, rng):
    vocab = a.vocab
    draw = lambda n: [rng.randrange(10, vocab) for _ in range(n)]
    if kind == "shared":
        prefixes = [draw(a.prefix_len) for _ in range(a.prefixes)]
        # Users of each prefix arrive interleaved, as many conversations at once.
        return [prefixes[rng.randrange(a.prefixes)] + draw(a.suffix_len) for _ in range(a.requests)]
    return [draw(a.prefix_len + a.suffix_len) for _ in range(a.requests)]


def run_once(a, policy, prompts, logdir):
    procs, workers, metric_ports = [], [], []
    try:
        for i in range(a.workers):
            mport = free_port()
            log = open(os.path.join(logdir, f"{policy}-worker{i}.log"), "w")
            p, port = start([f"{a.bin}/r1-worker", "--model", a.model, "--listen", "127.0.0.1:0",
                             "--metrics-listen", f"127.0.0.1:{mport}", "--threads", str(a.threads),
                             "--device", a.device, "--dtype", a.dtype,
                             "--kv-cache-memory", str(a.kv_cache_memory),
                             "--max-running", str(a.max_running), "--log-level", "warning"],
                            r"serving .* on \S*:(\d+)", log)
            procs.append(p)
            workers.append(port)
            metric_ports.append(mport)
        log = open(os.path.join(logdir, f"{policy}-gateway.log"), "w")
        g, gport = start([f"{a.bin}/r1-gateway", "--listen", "127.0.0.1:0", "--workers",
                          ",".join(f"127.0.0.1:{w}" for w in workers), "--routing", policy,
                          "--health-interval-ms", "200", "--log-level", "warning"],
                         r"LISTENING (\d+)", log)
        procs.append(g)
        time.sleep(1.0)  # the first health polls
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
            results = list(pool.map(lambda p: one_request(gport, os.path.basename(a.model.rstrip("/")), p, a.max_tokens), prompts))
        wall = time.monotonic() - t0
        queries = sum(scrape(m, "r1_worker_prefix_cache_queries_total") for m in metric_ports)
        hits = sum(scrape(m, "r1_worker_prefix_cache_hits_total") for m in metric_ports)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    ttfts = sorted(r[0] for r in results)
    return {
        "ttft_p50": statistics.median(ttfts),
        "ttft_p99": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "req_per_s": len(results) / wall,
        "tok_per_s": sum(r[2] for r in results) / wall,
        "hit_rate": hits / queries if queries else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin", help="directory of r1-worker and r1-gateway")
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--vocab", type=int, default=4096, help="prompt ids are drawn below this")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="each worker's --threads")
    ap.add_argument("--device", default="cpu",
                    help="each worker's --device (cpu: the issue's CPU workers, also on a GPU machine)")
    ap.add_argument("--dtype", default="float32", help="each worker's --dtype")
    ap.add_argument("--kv-cache-memory", type=int, default=16 << 20, help="each worker's KV cache, bytes")
    ap.add_argument("--max-running", type=int, default=16, help="each worker's --max-running")
    ap.add_argument("--policies", default="least-connections,load,prefix-aware")
    ap.add_argument("--workloads", default="shared,unique")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefixes", type=int, default=8)
    ap.add_argument("--prefix-len", type=int, default=1024)
    ap.add_argument("--suffix-len", type=int, default=32)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write every run's figures here")
    a = ap.parse_args()

    logdir = tempfile.mkdtemp(prefix="r1-routing-bench-")
    print(f"# logs in {logdir}; {a.workers} workers x --device {a.device} --threads {a.threads} "
          f"({a.dtype}), {os.cpu_count()} cores here, KV cache "
          f"{a.kv_cache_memory} bytes each; {a.requests} requests, {a.concurrency} at a time; "
          f"prefix {a.prefix_len} + suffix {a.suffix_len} tokens, {a.prefixes} prefixes; "
          f"{a.max_tokens} output tokens", flush=True)
    runs = []
    for rnd in range(a.rounds):
        for kind in a.workloads.split(","):
            prompts = workload(kind, a, random.Random(a.seed * 1000 + rnd))
            for policy in a.policies.split(","):
                r = run_once(a, policy, prompts, logdir)
                r.update(round=rnd + 1, workload=kind, policy=policy)
                runs.append(r)
                print(f"# round {rnd + 1} {kind:6s} {policy:17s} ttft p50 {r['ttft_p50']*1000:8.1f} ms"
                      f"  p99 {r['ttft_p99']*1000:8.1f} ms  {r['req_per_s']:6.2f} req/s"
                      f"  {r['tok_per_s']:7.1f} tok/s  hit rate {r['hit_rate']*100:5.1f}%", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "runs": runs}, f, indent=1)
    print(f"\nMedians over {a.rounds} round(s):\n")
    print("| workload | policy | TTFT p50 (ms) | TTFT p99 (ms) | req/s | output tok/s | prefix-cache hit rate |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in a.workloads.split(","):
        for policy in a.policies.split(","):
            rs = [r for r in runs if r["workload"] == kind and r["policy"] == policy]
            med = lambda k: statistics.median(r[k] for r in rs)
            print(f"| {kind} | {policy} | {med('ttft_p50')*1000:.0f} | {med('ttft_p99')*1000:.0f} | "
                  f"{med('req_per_s'):.2f} | {med('tok_per_s'):.1f} | {med('hit_rate')*100:.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
