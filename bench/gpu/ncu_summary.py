#!/usr/bin/env python3
"""Summarises `ncu --csv --page raw --metrics gpu__time_duration.sum` over gpu_model_bench with
CUDA graphs (--graph-profiling node): finds the last decode step (the repeating tail of kernel
names) and prints its kernels grouped by name, with their total GPU time.
Usage: ncu_summary.py NCU.csv"""
import collections
import csv
import sys


def main():
    rows = list(csv.reader(open(sys.argv[1], errors="replace")))
    head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    cols = rows[head]
    name_i, t_i = cols.index("Kernel Name"), cols.index("gpu__time_duration.sum")
    unit = rows[head + 1][t_i] if len(rows) > head + 1 else ""
    data = [(r[name_i], float(r[t_i].replace(",", ""))) for r in rows[head + 1:]
            if len(r) > t_i and r[t_i].replace(",", "").replace(".", "", 1).isdigit()]
    names = [n for n, _ in data]
    period = next((n for n in range(50, len(names) // 2 + 1) if names[-n:] == names[-2 * n:-n]), None)
    if not period:
        print(f"no repeating step found in {len(names)} kernels")
        return
    step = data[-period:]
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
    total = sum(t for _, t in step) * scale
    print(f"one decode step (graph replay): {period} kernels, {total:.0f} us of GPU time "
          f"(sum of kernel durations, unit {unit or 'ns'})")
    groups = collections.defaultdict(lambda: [0, 0.0])
    for n, t in step:
        n = n.replace("(anonymous namespace)::", "")
        g = groups[n.split("(")[0].split("<")[0][:70]]
        g[0] += 1
        g[1] += t * scale
    for n, (c, t) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"{t:9.1f} us {c:5d} x  {n}")


if __name__ == "__main__":
    main()
