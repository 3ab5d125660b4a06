#!/usr/bin/env python3
"""The plain-PyTorch peer for gpu_model_bench's decode grid: the same model shape (read from a
checkpoint's config.json, random bf16 weights), one decode step written the usual way, compiled
with torch.compile(mode="reduce-overhead") (CUDA graphs), over a static KV cache:

  per layer: qkv linear (+bias) -> rotate-half RoPE -> write k, v at the step's position of a
  [batch, kv_heads, context, head_dim] cache -> F.scaled_dot_product_attention over the whole
  cache (enable_gqa, flash) -> o linear -> RMSNorm -> SiLU-gated MLP; then the final norm, the
  lm_head and argmax, read on the host each step as an engine does.

Each (batch, context) cell decodes --steps steps with `context` keys in the cache and prints
"RESULT torch-peer decode batch B context C step_ms median X p99 Y tok_s Z", the lines
bench/gpu/table.py collects. Cells whose cache does not fit are printed as skipped.

  python3 bench/gpu/torch_peer.py --model /tmp/m15 --batch-sizes 1,16,64,256 --contexts 128,4096,16384,32768
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class Model:
    def __init__(self, cfg, dtype, device):
        g = torch.Generator(device="cpu").manual_seed(0)
        H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        self.nh, self.kvh = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.D = H // self.nh
        self.eps = cfg.get("rms_norm_eps", 1e-6)

        def rnd(*shape, scale=0.02):
            return (torch.randn(*shape, generator=g) * scale).to(dtype).to(device)

        self.embed = rnd(V, H)
        self.layers = []
        for _ in range(cfg["num_hidden_layers"]):
            self.layers.append(dict(
                ln1=torch.ones(H, dtype=dtype, device=device),
                wqkv=rnd((self.nh + 2 * self.kvh) * self.D, H), bqkv=rnd((self.nh + 2 * self.kvh) * self.D),
                wo=rnd(H, self.nh * self.D), ln2=torch.ones(H, dtype=dtype, device=device),
                wgu=rnd(2 * I, H), wd=rnd(H, I)))
        self.norm = torch.ones(H, dtype=dtype, device=device)
        self.lm_head = rnd(V, H)
        theta = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / theta ** (torch.arange(0, self.D, 2, device=device).float() / self.D)

    def step(self, tok, pos, kc, vc):
        """tok: [B] ids; pos: [1] position (same for every row); kc, vc: per-layer caches."""
        B = tok.shape[0]
        x = F.embedding(tok, self.embed).unsqueeze(1)  # [B, 1, H]
        f = pos.float().unsqueeze(-1) * self.inv_freq  # [1, D/2]
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)

        def rope(t):
            t1, t2 = t[..., : self.D // 2], t[..., self.D // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin

        for li, l in enumerate(self.layers):
            h = rms_norm(x, l["ln1"], self.eps)
            qkv = F.linear(h, l["wqkv"], l["bqkv"])
            q, k, v = qkv.split([self.nh * self.D, self.kvh * self.D, self.kvh * self.D], -1)
            q = rope(q.view(B, 1, self.nh, self.D)).transpose(1, 2)
            k = rope(k.view(B, 1, self.kvh, self.D)).transpose(1, 2)
            v = v.view(B, 1, self.kvh, self.D).transpose(1, 2)
            kc[li].index_copy_(2, pos, k)
            vc[li].index_copy_(2, pos, v)
            o = F.scaled_dot_product_attention(q, kc[li], vc[li], enable_gqa=True)
            x = x + F.linear(o.transpose(1, 2).reshape(B, 1, -1), l["wo"])
            h = rms_norm(x, l["ln2"], self.eps)
            gu = F.linear(h, l["wgu"])
            gate, up = gu.chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, l["wd"])
        x = rms_norm(x, self.norm, self.eps)
        return F.linear(x[:, -1], self.lm_head).float().argmax(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (its config.json gives the shape)")
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--contexts", default="128,4096,16384")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--mode", default="reduce-overhead", help="torch.compile mode, or 'eager'")
    ap.add_argument("--label", default="torch-peer")
    ap.add_argument("--dynamic", type=int, default=1,
                    help="1: compile once with dynamic batch and context (one compile for the grid); "
                         "0: one compile per cell")
    a = ap.parse_args()
    cfg = json.load(open(f"{a.model}/config.json"))
    dev, dtype = torch.device("cuda"), torch.bfloat16
    torch.manual_seed(0)
    m = Model(cfg, dtype, dev)
    torch._dynamo.config.cache_size_limit = 64
    step = m.step if a.mode == "eager" else torch.compile(m.step, mode=a.mode, dynamic=bool(a.dynamic))
    print(f"RESULT {a.label} torch {torch.__version__} device {torch.cuda.get_device_name()} mode {a.mode} dynamic {a.dynamic}", flush=True)
    L, kvh, D = cfg["num_hidden_layers"], m.kvh, m.D
    for C in [int(c) for c in a.contexts.split(",")]:
        for B in [int(b) for b in a.batch_sizes.split(",")]:
            need = 2 * L * B * C * kvh * D * 2
            free, _ = torch.cuda.mem_get_info()
            if need > 0.85 * free:
                print(f"RESULT {a.label} decode batch {B} context {C} skipped kv_GB {need / 1e9:.1f} free_GB {free / 1e9:.1f}", flush=True)
                continue
            kc = [torch.rand(B, kvh, C, D, dtype=dtype, device=dev) * 2 - 1 for _ in range(L)]
            vc = [torch.rand(B, kvh, C, D, dtype=dtype, device=dev) * 2 - 1 for _ in range(L)]
            tok = torch.ones(B, dtype=torch.long, device=dev)
            pos = torch.tensor([C - 1], device=dev)  # the last slot: attention reads all C keys
            t0 = time.perf_counter()
            for _ in range(3):  # compile and record the graph
                tok = step(tok, pos, kc, vc).clone()
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            times = []
            for _ in range(a.steps):
                t = time.perf_counter()
                tok = step(tok, pos, kc, vc).clone()
                tok.cpu()  # the host sync an engine has each step
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            p99 = sorted(times)[min(len(times) - 1, int(0.99 * len(times)))]
            print(f"RESULT {a.label} decode batch {B} context {C} step_ms median {1e3 * med:.3f} p99 {1e3 * p99:.3f} "
                  f"tok_s {B / med:.1f} warmup_s {warm:.1f}", flush=True)
            del kc, vc
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
