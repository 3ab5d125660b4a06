#!/usr/bin/env python3
"""Starts a real r1-worker and r1-gateway on loopback with a tiny model, sends traffic
through the gateway (and r1-loadtest through both), scrapes both /metrics and checks that
every metric the Grafana dashboard and the alert rules use exists, with the contract's
types (histograms with _bucket/_sum/_count series).

usage: live_metrics.py SOURCE_DIR R1_WORKER R1_GATEWAY R1_MKMODEL R1_LOADTEST
Exit status 77 (ctest SKIP_RETURN_CODE) when a program or the tokenizer is missing."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_for(what, fn, proc_list, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p, name in proc_list:
            if p.poll() is not None:
                raise SystemExit(f"FAIL: {name} exited with {p.returncode} while waiting for {what}")
        try:
            if fn():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"FAIL: timed out waiting for {what}")


def metric_families(text):
    """{name: type} from '# TYPE' lines, and the set of sample names."""
    types = {}
    samples = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
        elif line and not line.startswith("#"):
            samples.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return types, samples


def used_metrics(source):
    """r1_ metric names in the dashboard's expressions and the alert rules (histogram
    suffixes kept: they are checked as series)."""
    names = set()
    dash = json.load(open(os.path.join(source, "deploy/grafana/r1serve-dashboard.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs.append(open(os.path.join(source, "deploy/prometheus/alerts.yml")).read())
    for e in exprs:
        e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
        names.update(re.findall(r"\b(r1_[a-zA-Z0-9_]+)", e))
    return names


CONTRACT_TYPES = {
    "r1_worker_time_to_first_token_seconds": "histogram",
    "r1_worker_inter_token_latency_seconds": "histogram",
    "r1_worker_e2e_latency_seconds": "histogram",
    "r1_worker_queue_time_seconds": "histogram",
    "r1_worker_running_sequences": "gauge",
    "r1_worker_waiting_sequences": "gauge",
    "r1_worker_kv_cache_usage_ratio": "gauge",
    "r1_worker_device_memory_used_bytes": "gauge",
    "r1_worker_device_memory_total_bytes": "gauge",
    "r1_worker_device_memory_allocated_bytes": "gauge",
    "r1_worker_device_memory_reserved_bytes": "gauge",
    "r1_worker_kv_cache_bytes": "gauge",
    "r1_worker_prompt_tokens_total": "counter",
    "r1_worker_generation_tokens_total": "counter",
    "r1_worker_preemptions_total": "counter",
    "r1_worker_requests_total": "counter",
    "r1_worker_rejected_requests_total": "counter",
    "r1_gateway_requests_total": "counter",
    "r1_gateway_time_to_first_token_seconds": "histogram",
    "r1_gateway_e2e_latency_seconds": "histogram",
    "r1_gateway_upstream_attempts_total": "counter",
    "r1_gateway_retries_total": "counter",
    "r1_gateway_active_streams": "gauge",
    "r1_gateway_breaker_state": "gauge",
    "r1_gateway_worker_healthy": "gauge",
    "r1_gateway_rejected_requests_total": "counter",
}


def main():
    if len(sys.argv) != 6:
        skip("usage: live_metrics.py SOURCE_DIR R1_WORKER R1_GATEWAY R1_MKMODEL R1_LOADTEST")
    source, worker_bin, gateway_bin, mkmodel_bin, loadtest_bin = sys.argv[1:]
    for b in (worker_bin, gateway_bin, mkmodel_bin):
        if not os.access(b, os.X_OK):
            skip(f"{b} is not built")
    tokenizer = os.path.join(source, ".cache/tokenizer/tokenizer.json")
    if not os.path.exists(tokenizer):
        skip(f"{tokenizer} is missing (tools/install-deps.sh fetches it)")

    tmp = tempfile.mkdtemp(prefix="r1-live-metrics-")
    procs = []
    failures = []

    def check(cond, msg):
        if not cond:
            failures.append(msg)
            print(f"FAIL: {msg}")

    try:
        model = os.path.join(tmp, "model")  # served as model id "model" (its directory name)
        mk = subprocess.run([mkmodel_bin, "--preset", "tiny", "--out", model, "--tokenizer", tokenizer],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        if mk.returncode != 0:
            raise SystemExit(f"FAIL: r1-mkmodel exited {mk.returncode}: {mk.stderr.strip()}")
        grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
        wlog = open(os.path.join(tmp, "worker.log"), "w")
        worker = subprocess.Popen([worker_bin, "--model", model, "--listen", f"127.0.0.1:{grpc_port}",
                                   "--metrics-listen", f"127.0.0.1:{metrics_port}", "--device", "cpu",
                                   "--kv-cache-memory", str(64 << 20), "--drain-timeout", "2"],
                                  stdout=wlog, stderr=subprocess.STDOUT)
        procs.append((worker, "r1-worker"))
        # A second worker with room for one running and one waiting sequence: bursts of
        # concurrent requests overflow it (RESOURCE_EXHAUSTED), the gateway retries them on the
        # first worker, and r1_gateway_retries_total gets a series.
        full_port = free_port()
        flog = open(os.path.join(tmp, "worker-full.log"), "w")
        full = subprocess.Popen([worker_bin, "--model", model, "--listen", f"127.0.0.1:{full_port}",
                                 "--device", "cpu", "--kv-cache-memory", str(16 << 20), "--max-running", "1",
                                 "--max-waiting", "1", "--drain-timeout", "1"], stdout=flog, stderr=subprocess.STDOUT)
        procs.append((full, "r1-worker (--max-running 1 --max-waiting 1)"))
        glog = open(os.path.join(tmp, "gateway.log"), "w")
        gateway = subprocess.Popen([gateway_bin, "--listen", f"127.0.0.1:{http_port}",
                                    "--workers", f"127.0.0.1:{grpc_port},127.0.0.1:{full_port}",
                                    "--max-body-bytes", "65536",
                                    "--health-interval-ms", "200"],
                                   stdout=glog, stderr=subprocess.STDOUT)
        procs.append((gateway, "r1-gateway"))
        gw = f"http://127.0.0.1:{http_port}"
        wait_for("the worker's /metrics", lambda: http("GET", f"http://127.0.0.1:{metrics_port}/metrics")[0] == 200, procs)
        wait_for("the gateway's /readyz", lambda: http("GET", f"{gw}/readyz")[0] == 200, procs)
        wait_for("both workers healthy", lambda: len(re.findall(
            r"r1_gateway_worker_healthy\{[^}]*\} 1", http("GET", f"{gw}/metrics")[1])) == 2, procs)

        # Traffic: a streamed chat, a plain completion, a bad request, a body too large.
        hdr = {"Content-Type": "application/json"}
        chat = json.dumps({"model": "model", "messages": [{"role": "user", "content": "hello"}],
                           "max_tokens": 4, "stream": True}).encode()
        status, body = http("POST", f"{gw}/v1/chat/completions", chat, hdr)
        check(status == 200 and "data: [DONE]" in body, f"streamed chat: {status} {body[:200]}")
        comp = json.dumps({"model": "model", "prompt": "one two", "max_tokens": 3}).encode()
        status, body = http("POST", f"{gw}/v1/completions", comp, hdr)
        check(status == 200, f"completion: {status} {body[:200]}")
        status, _ = http("POST", f"{gw}/v1/chat/completions", b"{not json", hdr)
        check(status == 400, f"bad JSON gives 400, got {status}")
        status, _ = http("POST", f"{gw}/v1/completions", b'{"prompt":"' + b"x" * 70000 + b'"}', hdr)
        check(status == 413, f"a body over --max-body-bytes gives 413, got {status}")

        # Bursts of concurrent requests until one overflowed the small worker and was retried.
        retried = False
        burst = json.dumps({"model": "model", "prompt": "one two three", "max_tokens": 48,
                            "stream": True}).encode()
        for round_no in range(1, 9):
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                http("POST", f"{gw}/v1/completions", burst, hdr)[0])) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(results == [200] * 12, f"a burst of 12 streams all succeed (retries included): {results}")
            if re.search(r"r1_gateway_retries_total\{", http("GET", f"{gw}/metrics")[1]):
                retried = True
                print(f"the gateway retried after {round_no} burst(s)")
                break
        check(retried, "the gateway retried a request the small worker turned down")

        # r1-loadtest against the real stack, over HTTP and over gRPC.
        if os.access(loadtest_bin, os.X_OK):
            for target in (gw, f"grpc://127.0.0.1:{grpc_port}"):
                r = subprocess.run([loadtest_bin, "--target", target, "--requests", "6", "--concurrency", "3",
                                    "--prompt-len", "8", "--output-len", "4", "--json"],
                                   capture_output=True, text=True, timeout=300)
                check(r.returncode == 0, f"r1-loadtest {target}: exit {r.returncode}: {r.stderr[-300:]}")
                if r.returncode == 0:
                    run = json.loads(r.stdout)["runs"][0]
                    check(run["succeeded"] == 6 and run["failed"] == 0, f"r1-loadtest {target}: {run}")
                    check(run["output_tokens"] == 24, f"r1-loadtest {target}: 6 x 4 tokens, got {run['output_tokens']}")
                    check(run["ttft_ms"]["count"] == 6, f"r1-loadtest {target}: a first token per request")

        _, wtext = http("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        _, gtext = http("GET", f"{gw}/metrics")
        wtypes, wsamples = metric_families(wtext)
        gtypes, gsamples = metric_families(gtext)
        types = {**wtypes, **gtypes}
        samples = wsamples | gsamples

        # Every contract metric exists with its type; histograms have their three series.
        for name, kind in CONTRACT_TYPES.items():
            check(types.get(name) == kind, f"{name}: TYPE {kind} (got {types.get(name)})")
            if kind == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    check(name + suffix in samples, f"{name}{suffix} series exposed")
        # Every metric the dashboard and the alert rules use exists.
        used = used_metrics(source)
        check(len(used) >= 15, f"found the dashboard's and rules' metrics ({len(used)})")
        for name in sorted(used):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            exists = name in types or name in samples or (base != name and types.get(base) == "histogram")
            check(exists, f"{name} (used by deploy/) is exposed by a worker or the gateway")
        # Traffic left its marks.
        check(re.search(r'r1_gateway_requests_total\{[^}]*code="200"', gtext), "gateway counted 200s")
        check(re.search(r'r1_gateway_rejected_requests_total\{reason="bad_request"\} [1-9]', gtext), "gateway counted a bad_request")
        check(re.search(r'r1_gateway_rejected_requests_total\{reason="too_large"\} [1-9]', gtext), "gateway counted a too_large")
        check(re.search(r"r1_worker_generation_tokens_total [1-9]", wtext), "worker counted generated tokens")
        check(re.search(rf'r1_gateway_worker_healthy\{{worker="127.0.0.1:{grpc_port}"\}} 1', gtext), "gateway reports the worker healthy")
        print(f"checked {len(used)} metric names used by deploy/ against the live worker and gateway")
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, name in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if failures:
            for log in ("worker.log", "worker-full.log", "gateway.log"):
                path = os.path.join(tmp, log)
                if os.path.exists(path):
                    print(f"--- {log} (last lines)")
                    print("".join(open(path, errors="replace").readlines()[-15:]))
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} checks failed")
        sys.exit(1)
    print("live metrics: all checks passed")


if __name__ == "__main__":
    main()
