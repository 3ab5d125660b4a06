#!/usr/bin/env python3
"""transformers baseline for bench/gpu/run.sh: the same checkpoint (r1-mkmodel's random-weight
r1-distill-qwen-1.5b), bf16, sdpa attention, `generate` greedy at batch 1.

Prints RESULT lines like gpu_model_bench:
  time to first token = generate(max_new_tokens=1) for a 128- and a 2,048-token prompt (median);
  decode tok/s = (N - 1) / (t(generate N tokens) - t(generate 1 token)), 128-token prompt;
  peak GPU memory from torch.cuda.max_memory_reserved.
"""
import argparse
import statistics
import sys
import time

import torch
import transformers


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-lens", default="128,2048")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=129)
    ap.add_argument("--batch-sizes", default="1")
    a = ap.parse_args()
    label = "transformers"
    model = transformers.AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    print(f"RESULT {label} version {transformers.__version__} torch {torch.__version__} "
          f"device {torch.cuda.get_device_name()}", flush=True)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size

    def gen(ids, n):
        with torch.inference_mode():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                  min_new_tokens=n, do_sample=False, pad_token_id=0)

    def prompt(n, b=1):
        return torch.randint(0, min(vocab, 150000), (b, n), generator=g).cuda()

    gen(prompt(64), 4)  # warm-up
    for p in [int(x) for x in a.prompt_lens.split(",")]:
        ts = [timed(lambda: gen(prompt(p), 1)) for _ in range(a.reps + 1)][1:]
        print(f"RESULT {label} ttft_ms prompt {p} median {1e3 * statistics.median(ts):.2f} "
              f"min {1e3 * min(ts):.2f}", flush=True)
    for b in [int(x) for x in a.batch_sizes.split(",")]:
        ids = prompt(128, b)
        gen(ids, 8)
        t1 = statistics.median([timed(lambda: gen(ids, 1)) for _ in range(3)])
        tn = statistics.median([timed(lambda: gen(ids, a.decode_tokens)) for _ in range(2)])
        step = (tn - t1) / (a.decode_tokens - 1)
        print(f"RESULT {label} decode batch {b} context 128 step_ms median {1e3 * step:.3f} "
              f"p99 nan tok_s {b / step:.1f}", flush=True)
    print(f"RESULT {label} peak_gpu_memory_GB {torch.cuda.max_memory_reserved() / 1e9:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
