"""The decode attention launch (`attention_decode` with RoPE and the cache write, as the 70B decode step runs it), swept
on the GPU: keys per tile (BLOCK_N), programs aimed for (`target`, hence chunks per row and KV head) and warps, at
Code Llama 70B's shapes (64 query heads, 8 KV heads, d = 128), batch 1 and 16, contexts 128 and 4096. µs per launch
from one CUDA graph over L layers' caches (so the cache comes from DRAM, as in a real step); each output checked
against the default launch's.

    PYTHONPATH=. python bench/proto/attn_sweep.py --out $OUT
"""
import argparse, itertools, json, os, statistics
import torch
from triton.testing import do_bench
from qllama.attention_kernels import attention_decode

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--deadline', type=float, default=240)
    ap.add_argument('--cases', default='1:128,1:4096,16:128,16:4096', help='batch:context pairs')
    ap.add_argument('--no-sweep', action='store_true', help='the default launch only'); a = ap.parse_args()
    import time; t0 = time.time()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    nh, nkv, d = 64, 8, 128
    cos = torch.randn(8192, d, device=dev); sin = torch.randn(8192, d, device=dev)
    for B, ctx in [tuple(map(int, c.split(':'))) for c in a.cases.split(',')]:
        L = 80 if B == 1 else 12
        kc = [torch.randn(B, nkv, 4096, d, device=dev, dtype=torch.float16) for _ in range(L)]
        vc = [torch.randn_like(k) for k in kc]
        q = torch.randn(B, 1, nh, d, device=dev, dtype=torch.float16).transpose(1, 2)
        kn = torch.randn(B, nkv, 1, d, device=dev, dtype=torch.float16); vn = torch.randn_like(kn)
        pos = torch.full((B,), ctx - 1, device=dev, dtype=torch.long); slots = torch.arange(B, device=dev)
        def run(i, **kw): return attention_decode(q, kc[i], vc[i], pos, slots, ctx, rope=(cos, sin, kn, vn), **kw)
        ref = run(0).clone()
        def time_us(kw):
            st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())   # the inputs are written first
            with torch.cuda.stream(st):
                for i in range(L): run(i, **kw)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for i in range(L): run(i, **kw)
            g.replay(); torch.cuda.synchronize()
            return statistics.median(do_bench(g.replay, warmup=10, rep=60, return_mode='median') for _ in range(3)) * 1e3 / L
        base = time_us({})
        recs.append(dict(card=card, batch=B, context=ctx, config='default', us=base)); print(f"B={B:<2} ctx={ctx:<4} default {base:6.2f} us", flush=True)
        best = ('default', base)
        for bn, tgt, nw in itertools.product((32, 64, 128), (8, 16, 32, 66, 132, 264, 528), (4, 8)) if not a.no_sweep else ():
            if time.time() - t0 > a.deadline: break
            kw = dict(BLOCK_N=bn, target=tgt, num_warps=nw)
            try:
                err = (run(0, **kw).float() - ref.float()).abs().max().item()
                us = time_us(kw)
            except Exception as e:
                print(f"  {kw}: {type(e).__name__} {str(e)[:120]}", flush=True); continue
            recs.append(dict(card=card, batch=B, context=ctx, config=kw, us=us, max_abs_diff_default=err))
            if us < best[1]: best = (kw, us)
        print(f"B={B:<2} ctx={ctx:<4} best {best[0]} {best[1]:6.2f} us ({best[1] / base:.0%} of default)", flush=True)
        del kc, vc; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"attn_sweep_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
