#!/usr/bin/env python3
"""Hugging Face tokenizers speed, measured like bench/tokenizer_bench.cc (single thread):
load time, encode MB/s (whole document, cold and warm; and line by line) and decode tokens/s.

  python3 bench/tokenizer_bench_hf.py --tokenizer .cache/tokenizer/tokenizer.json --text FILE
"""
import argparse
import os
import time

# One thread: no rayon pool, no parallel encode.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=".cache/tokenizer/tokenizer.json")
    ap.add_argument("--text", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    import tokenizers
    from tokenizers import Tokenizer

    with open(a.text, encoding="utf-8", newline="") as f:
        text = f.read()
    nbytes = len(text.encode("utf-8"))
    mb = nbytes / 1e6
    lines = text.splitlines(keepends=True)

    loads = []
    for _ in range(max(3, a.rounds)):
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(a.tokenizer)
        loads.append(time.perf_counter() - t0)
    print("hf tokenizers %s load_ms first=%.1f best=%.1f" % (tokenizers.__version__, loads[0] * 1e3,
                                                             min(loads) * 1e3))
    times = []
    ids = None
    for r in range(a.rounds + 1):
        t0 = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        times.append(time.perf_counter() - t0)
        if ids is None:
            ids = enc.ids
    print("hf encode_doc bytes=%d tokens=%d cold_MBps=%.2f warm_MBps=%.2f"
          % (nbytes, len(ids), mb / times[0], mb / min(times[1:])))
    best = 1e9
    n = 0
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        n = 0
        for l in lines:
            n += len(tok.encode(l, add_special_tokens=False).ids)
        best = min(best, time.perf_counter() - t0)
    print("hf encode_lines lines=%d tokens=%d MBps=%.2f" % (len(lines), n, mb / best))
    best = 1e9
    out = ""
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        out = tok.decode(ids, skip_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    print("hf decode_doc tokens=%d out_bytes=%d Mtok_per_s=%.2f roundtrip=%s"
          % (len(ids), len(out.encode("utf-8")), len(ids) / best / 1e6,
             "same" if out == text else "differs"))
    # Streaming decode as servers do it with HF: tokenizers' DecodeStream, one token at a time.
    try:
        from tokenizers.decoders import DecodeStream
        best = 1e9
        for _ in range(min(a.rounds, 2)):
            ds = DecodeStream(skip_special_tokens=False)
            t0 = time.perf_counter()
            for i in ids:
                ds.step(tok, i)
            best = min(best, time.perf_counter() - t0)
        print("hf decode_incremental tokens=%d Mtok_per_s=%.2f" % (len(ids), len(ids) / best / 1e6))
    except Exception as e:  # older tokenizers without DecodeStream
        print("hf decode_incremental unavailable: %s" % e)


if __name__ == "__main__":
    main()
