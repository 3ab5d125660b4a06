#!/usr/bin/env python3
"""Summarises `ncu --csv --page raw --metrics gpu__time_duration.sum[,dram__bytes_read.sum]` over
gpu_model_bench with CUDA graphs (--graph-profiling node): finds the last decode step (the
repeating tail of kernel names) and prints its kernels grouped by name, with their total GPU
time and, when DRAM bytes were collected, the read bandwidth they reached.
Usage: ncu_summary.py NCU.csv [FIRST_N]
  FIRST_N: also list the step's first N kernels one by one.
  With R1_NCU_LAYERS=L (the model's layer count) it also prints the mean time, bytes and
  bandwidth of each kernel of a layer over the step's L layers (docs/gpu.md's profile tables),
  taking the kernels between the step's first and its last two (the lm_head and argmax) as L
  equal layers."""
import collections
import csv
import os
import re
import sys

TIME_SCALE_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}
BYTE_SCALE = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}


GEMV_MODES = {"0": "store (qkv)", "1": "residual (o, down)", "2": "silu-mul (gate/up)",
              "3": "f32 logits (lm_head)"}


def short(name):
    """Kernel name without namespaces' noise, template arguments and parameters (our GEMV keeps
    its epilogue, which tells the projections apart)."""
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    # The tensor-core GEMV's arguments are <T, epilogue, weight format>, the CUDA-core one's
    # <T, rows, epilogue>.
    if m := re.search(r"GemvTcKernel<[^,>]+, (\d), (\d)>", name):
        fmt = {"0": "", "1": " fp8", "2": " int4"}.get(m[2], " format " + m[2])
        return "r1::GemvTcKernel " + GEMV_MODES.get(m[1], m[1]) + fmt
    if m := re.search(r"GemvKernel<[^,>]+, \d+, (\d)>", name):
        return "r1::GemvKernel " + GEMV_MODES.get(m[1], m[1])
    name = re.sub(r"^void ", "", name)
    return name.split("(")[0].split("<")[0][:70]


def number(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def main():
    rows = list(csv.reader(open(sys.argv[1], errors="replace")))
    head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    cols = rows[head]
    units = rows[head + 1] if len(rows) > head + 1 else []
    name_i, t_i = cols.index("Kernel Name"), cols.index("gpu__time_duration.sum")
    b_i = cols.index("dram__bytes_read.sum") if "dram__bytes_read.sum" in cols else None
    t_scale = TIME_SCALE_US.get(units[t_i] if units else "", 1e-3)
    b_scale = BYTE_SCALE.get(units[b_i], 1) if b_i is not None and units else 1
    data = []
    for r in rows[head + 1:]:
        if len(r) <= t_i or number(r[t_i]) is None:
            continue
        b = number(r[b_i]) * b_scale if b_i is not None and number(r[b_i]) is not None else 0.0
        data.append((r[name_i], number(r[t_i]) * t_scale, b))
    names = [n for n, _, _ in data]
    period = next((n for n in range(50, len(names) // 2 + 1) if names[-n:] == names[-2 * n:-n]), None)
    if not period:
        print(f"no repeating step found in {len(names)} kernels")
        return
    step = data[-period:]
    total = sum(t for _, t, _ in step)
    total_b = sum(b for _, _, b in step)
    print(f"one decode step (graph replay): {period} kernels, {total:.0f} us of GPU time "
          f"(sum of kernel durations), {total_b / 1e9:.3f} GB read from DRAM")
    groups = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for n, t, b in step:
        g = groups[short(n)]
        g[0] += 1
        g[1] += t
        g[2] += b
    for n, (c, t, b) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:20]:
        bw = f"{b / (t * 1e-6) / 1e9:7.0f} GB/s" if b else ""
        print(f"{t:9.1f} us {c:5d} x  {t / c:7.2f} us each  {bw}  {n}")
    layers = int(os.environ.get("R1_NCU_LAYERS", "0"))
    body = step[1:-2]
    if layers > 0 and len(body) % layers == 0:
        per = len(body) // layers
        print(f"\nper layer (mean over {layers} layers):")
        for j in range(per):
            ks = body[j::per]
            t = sum(k[1] for k in ks) / layers
            b = sum(k[2] for k in ks) / layers
            bw = f"{b / (t * 1e-6) / 1e12:5.2f} TB/s" if b > 1e6 else ""
            print(f"{t:8.2f} us {b / 1e6:8.2f} MB {bw:>10}  {short(ks[0][0])}")
    if len(sys.argv) > 2:  # the first N kernels of the step, one by one
        print("\nthe step's first kernels:")
        for n, t, b in step[:int(sys.argv[2])]:
            bw = f"{b / (t * 1e-6) / 1e9:7.0f} GB/s" if b else ""
            print(f"{t:8.2f} us {b / 1e6:8.2f} MB {bw}  {n[:150]}")


if __name__ == "__main__":
    main()
