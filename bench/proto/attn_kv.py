"""Decode attention with each tile's values loaded together with its keys (`now`, a trial) against after the softmax (`before`).

Timed on an H200 on 2026-11-29 (`attn_kv_NVIDIA_H200.json`): the same bits, and within ±0.8 µs a call either way
(batch 1 at context 4096 slower), so the kernel keeps its order; to time it again, move `_attention_tile`'s value
load next to its key load in `04d_attention` and run this.

`_attention_tile` used to load a tile's values only after its scores and softmax: a second dependent round trip per
tile. Both modules in one process (`before`: `qllama/attention_kernels.py` of commit 2654a9a, from git), the 70B's
heads (64 query, 8 KV, d = 128), RoPE and the cache write in the kernel as decode runs it, 80 layers' caches cycled
in one CUDA graph (as a token reads them), batch 1 and 16 at context 128 (kv_len bucket 256) and 4096 (4352): the
outputs bit for bit, and µs per call.

    PYTHONPATH=.:bench python bench/proto/attn_kv.py [--out DIR]
"""
import argparse, importlib.util, json, os, subprocess, sys, tempfile
import torch
from triton.testing import do_bench
from qllama import attention_kernels as new

def before(commit='2654a9a'):
    "The attention module as of `commit` (its relative import made absolute), imported under another name."
    src = subprocess.run(['git', 'show', f'{commit}:qllama/attention_kernels.py'], capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), '_attn_before.py')
    open(path, 'w').write(src.replace('from .gptq_matmul import', 'from qllama.gptq_matmul import'))
    spec = importlib.util.spec_from_file_location('_attn_before', path); mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results')); a = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []; old = before()
    nh, nkv, d, L = 64, 8, 128, 80
    for B, ctx, bucket in ((1, 128, 256), (1, 4096, 4352), (16, 128, 256), (16, 4096, 4352)):
        S = bucket + 64
        kc = [torch.randn(B, nkv, S, d, device=dev, dtype=torch.float16) for _ in range(L)]
        vc = [torch.randn(B, nkv, S, d, device=dev, dtype=torch.float16) for _ in range(L)]
        q = torch.randn(B, nh, 1, d, device=dev, dtype=torch.float16)
        k = torch.randn(B, nkv, 1, d, device=dev, dtype=torch.float16); v = torch.randn_like(k)
        pos = torch.full((B,), ctx - 1, device=dev, dtype=torch.int64)
        ang = torch.arange(S, device=dev)[:, None] * (10000 ** (-torch.arange(0, d, 2, device=dev) / d))[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], 1).float().contiguous(); sin = torch.cat([ang.sin(), ang.sin()], 1).float().contiguous()
        outs = {}
        for name, mod in (('before', old), ('now', new)):
            run = lambda: [mod.attention_decode(q, kc[l], vc[l], pos, kv_len=bucket, rope=(cos, sin, k, v)) for l in range(L)]
            ys = run(); torch.cuda.synchronize()
            outs[name] = torch.stack([y.float() for y in ys])
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g): run()
            us = do_bench(g.replay, warmup=20, rep=200, return_mode='median') * 1e3 / L
            recs.append(dict(card=card, B=B, context=ctx, kv_len=bucket, variant=name, us_per_call=us))
        same = torch.equal(outs['before'], outs['now'])
        recs.append(dict(card=card, B=B, context=ctx, metric='same_bits', value=same, max_abs_diff=(outs['before'] - outs['now']).abs().max().item()))
        b, n = recs[-3]['us_per_call'], recs[-2]['us_per_call']
        print(f"B={B:2} ctx={ctx:5}: before {b:6.2f} us, now {n:6.2f} us a call ({(n - b) * L / 1e3:+.3f} ms a token); same bits: {same}", flush=True)
        del kc, vc; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"attn_kv_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
