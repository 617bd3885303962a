"""Batch-1 GPTQ kernel with fewer instructions per weight byte: old (`qllama.gptq_matmul`) against new (`NEW` module).

SASS of the old loop (sm_90, compiled on the CPU machine with Triton's ptxas): 379 instructions per step of gate/up
(4 columns x 1 unit per thread, 64 weight bytes), 1546 on narrow layers (4 x 4 units), of which ~40% bounds checks:
16 masked activation loads with 64-bit compares, zeroing moves for masked loads. The new kernel drops the masks when
the split-K divides the steps exactly (EVEN: K % 32 == 0, N % BLOCK_N == 0, splits chosen among the divisors),
loads the 16 activation pairs in 4 x 128-bit loads (V4) and keeps a per-group accumulator (no cross-warp reduction
per step at 32g): 277 / 994 instructions. Checks every variant against the old kernel, times the four joined shapes
of a layer cycling through 4 layers' copies (CUDA graphs), prints a table.

The prototype module is the committed one plus this file's knobs: make it with
    patch qllama/gptq_matmul.py -o qllama/_new_gptq_matmul.py < bench/proto/gemv_even_proto.patch
(against the module as committed with this file; the first run of gemv_even.py used `ld.global.nc` for x).

    PYTHONPATH=.:bench python bench/proto/gemv_even.py [NEW_MODULE]   (default qllama._new_gptq_matmul)
"""
import importlib, json, math, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS, BRANCHES, relerr

def main():
    new = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else 'qllama._new_gptq_matmul')
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    out = os.environ.get('OUT', 'bench/results')
    bw = copy_bandwidth(dev); print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for bits, gs in BRANCHES:
        name = branch_name(bits, gs)
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
        xs = {K: torch.randn(1, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        for s, (K, N) in JOINED.items():
            floor_us = gm.gptq_matmul_bytes(K, N, bits, gs, 1) / bw / 1e3
            p0 = layers[0][s]
            cfg, tiles, _ = new._launch_config(1, N, K, p0, dev)
            steps = -(-K // 32) // cfg['U']
            divs = [d for d in range(1, steps + 1) if steps % d == 0]
            i = divs.index(cfg['SPLIT_K']) if cfg['EVEN'] else None
            variants = [('old', gm, {}), ('new', new, {}), ('new even=False', new, dict(even=False))]
            if i is not None:
                variants += [(f'new split {d}', new, dict(split_k=d)) for d in divs[max(0, i - 1):i + 2] if d != cfg['SPLIT_K']]
            alt = 4 if cfg['num_warps'] == 8 else 8
            variants.append((f'new nw {alt}', new, dict(num_warps=alt)))
            if N >= 32768: variants.append(('new U 2', new, dict(U=2)))
            y_old = gm.gptq_matmul(xs[K], p0, x_sorted=True)
            for label, mod, kw in variants:
                try:
                    y = mod.gptq_matmul(xs[K], p0, x_sorted=True, **kw)
                    e_old = relerr(y, y_old)
                    assert e_old < 2e-3, f"relerr to old {e_old:.1e}"
                    c, _, _ = mod._launch_config(1, N, K, p0, dev, **kw)
                    us = graph_time([(lambda p=lay[s], x=xs[K]: mod.gptq_matmul(x, p, x_sorted=True, **kw)) for lay in layers]) / 4 * 1e3
                except Exception as e:
                    print(f"{name} {s} {label}: {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True); continue
                r = dict(card=card, branch=name, shape=s, variant=label, split=c['SPLIT_K'], even=c.get('EVEN', False), U=c['U'],
                         num_warps=c['num_warps'], us=us, floor_us=floor_us, fraction_of_floor=floor_us / us, relerr_to_old=e_old)
                recs.append(r); print(json.dumps(r), flush=True)
        del layers; torch.cuda.empty_cache()
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, f"gemv_even_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(copy_GBps=bw, records=recs), indent=1))
    print(f"\n{card}, copy {bw:.0f} GB/s; M=1 linears of one token (4 joined shapes x {LAYERS}), ms (fraction of floor)")
    for name in dict.fromkeys(r['branch'] for r in recs):
        rs = [r for r in recs if r['branch'] == name]
        fl = sum(next(r['floor_us'] for r in rs if r['shape'] == s) for s in JOINED) * LAYERS / 1e3
        def tot(pick): return sum(pick(s)['us'] for s in JOINED) * LAYERS / 1e3
        old = tot(lambda s: next(r for r in rs if r['shape'] == s and r['variant'] == 'old'))
        nw_ = tot(lambda s: next(r for r in rs if r['shape'] == s and r['variant'] == 'new'))
        best = {s: min((r for r in rs if r['shape'] == s and r['variant'] != 'old'), key=lambda r: r['us']) for s in JOINED}
        bt = sum(b['us'] for b in best.values()) * LAYERS / 1e3
        print(f"{name:<34} old {old:6.2f} ({fl / old:.0%})  new {nw_:6.2f} ({fl / nw_:.0%})  best {bt:6.2f} ({fl / bt:.0%})  " +
              " ".join(f"{s}:{b['variant']}/{b['us']:.0f}us" for s, b in best.items()))

if __name__ == '__main__': main()
