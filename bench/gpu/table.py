#!/usr/bin/env python3
"""Prints bench/gpu/run.sh's table from its log's RESULT lines (and r1-loadtest's --json report)."""
import json
import re
import sys


def main():
    res = {}
    order = []
    for line in open(sys.argv[1]):
        if not line.startswith("RESULT "):
            continue
        f = line.split()
        who, rest = f[1], " ".join(f[2:])
        if who not in res:
            res[who] = {}
            order.append(who)
        r = res[who]
        if m := re.match(r"ttft_ms prompt (\d+)(?: chunk \d+)? median ([\d.]+)", rest):
            r[f"TTFT {m[1]}-token prompt (ms)"] = m[2]
        elif m := re.match(r"decode batch (\d+) context (\d+) step_ms median ([\d.]+) p99 (\S+) tok_s ([\d.]+)"
                           r"(?: bound_tok_s (\d+) frac ([\d.]+))?(?: host_ms ([\d.]+))?", rest):
            r[f"decode batch {m[1]} (tok/s)"] = m[5]
            r[f"decode batch {m[1]} step median (ms)"] = m[3]
            r[f"decode batch {m[1]} step p99 (ms)"] = m[4]
            if m[6]:
                r[f"decode batch {m[1]} bound (tok/s)"] = m[6]
                r[f"decode batch {m[1]} fraction of bound"] = m[7]
            if m[8]:
                r[f"decode batch {m[1]} host ms per step"] = m[8]
        elif m := re.match(r"copy_bandwidth_GBs (\S+) bytes_per_step_GB (\S+) batch1_bound_tok_s (\S+)", rest):
            r["copy bandwidth (GB/s, read+write)"] = m[1]
            r["bytes read per decode step (GB)"] = m[2]
            r["batch-1 bound (tok/s)"] = m[3]
        elif m := re.match(r"gpu_memory_used_GB (\S+)", rest):
            r["GPU memory used (GB, nvidia-smi peak)"] = m[1]
        elif m := re.match(r"peak_gpu_memory_GB (\S+)", rest):
            r["torch peak reserved (GB)"] = m[1]
    rows = []
    for who in order:
        for k in res[who]:
            if k not in rows:
                rows.append(k)
    w = max([len(r) for r in rows] + [10])
    print("\n" + "metric".ljust(w) + "".join(f"{o:>16}" for o in order))
    def order_key(k):  # TTFT and batch 1 first, then by batch size
        nums = [int(n) for n in re.findall(r"\d+", k)] or [0]
        return (not k.startswith(("decode batch 1 ", "TTFT")), re.sub(r"\d+", "", k), nums)
    for k in sorted(rows, key=order_key):
        print(k.ljust(w) + "".join(f"{res[o].get(k, '-'):>16}" for o in order))
    if len(sys.argv) > 2:
        try:
            rep = json.load(open(sys.argv[2]))
        except (OSError, ValueError) as e:
            print(f"\nno loadtest report ({e})")
            return
        print("\nthrough r1-gateway (r1-loadtest, prompt ~128 words, 128 output tokens):")
        print(f"{'streams':>8} {'ok':>6} {'fail':>5} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}  (ms)")
        for r in rep["runs"]:
            print(f"{r['concurrency']:>8} {r['succeeded']:>6} {r['failed']:>5} {r['output_tokens_per_s']:>10.0f} "
                  f"{r['ttft_ms']['p50']:>9.1f} {r['ttft_ms']['p99']:>9.1f} {r['itl_ms']['p50']:>8.1f} {r['itl_ms']['p99']:>8.1f}")


def grid(path):
    """The long-context tables (bench/gpu/long_context.sh): decode tok/s per (batch, context)
    for each label next to the PyTorch peer and the bound, time to first token against its FLOP
    bound, and the serving runs."""
    cells, labels, ttft, serve = {}, [], [], []
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        f = line.split()
        who, rest = f[1], " ".join(f[2:])
        if m := re.match(r"decode batch (\d+) context (\d+) step_ms median ([\d.]+) p99 ([\d.]+) tok_s ([\d.]+)(?: bound_tok_s (\d+) frac ([\d.]+))?", rest):
            key = (int(m[1]), int(m[2]))
            cells.setdefault(key, {})[who] = (float(m[5]), m[6], float(m[3]), float(m[4]))
            if who not in labels:
                labels.append(who)
        elif m := re.match(r"decode batch (\d+) context (\d+) skipped", rest):
            cells.setdefault((int(m[1]), int(m[2])), {})[who] = None
            if who not in labels:
                labels.append(who)
        elif rest.startswith("ttft_ms"):
            ttft.append(f"{who} {rest}")
        elif who == "serve-r1":
            serve.append(rest)
    if cells:
        print("\ndecode tok/s (step ms median / p99); bound = B / ((weights + KV read) / copy bandwidth)")
        print(f"{'batch':>6} {'context':>8} " + "".join(f"{l:>26}" for l in labels) + f"{'bound':>9}")
        for (b, c) in sorted(cells):
            row, bound = cells[(b, c)], "-"
            out = []
            for l in labels:
                v = row.get(l, "absent")
                if v == "absent":
                    out.append(f"{'-':>26}")
                elif v is None:
                    out.append(f"{'(does not fit)':>26}")
                else:
                    if v[1]:
                        bound = v[1]
                    out.append(f"{v[0]:>10.0f} ({v[2]:.2f}/{v[3]:.2f} ms)".rjust(26))
            print(f"{b:>6} {c:>8} " + "".join(out) + f"{bound:>9}")
    for t in ttft:
        print(t)
    for s in serve:
        print("serve", s)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--grid":
        grid(sys.argv[2])
    else:
        main()
