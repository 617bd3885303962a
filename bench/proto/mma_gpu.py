"""Prototype check and timing of the mma.sync GPTQ kernel (bench/proto/mma.py) at 70B shapes, vs the notebook's kernels."""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(__file__)); sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, SHAPES, BRANCHES, branch_name, LAYERS, relerr
from mma import mma_matmul
dev = torch.device('cuda'); torch.manual_seed(0)
card = torch.cuda.get_device_name(dev)
out = os.environ.get('OUT', '/tmp'); recs = []
def rec(**r): r['card'] = card; recs.append(r); print(json.dumps(r), flush=True)
bw = copy_bandwidth(dev); rec(metric='copy_bandwidth', value=bw, unit='GB/s')
sweep_br = os.environ.get('SWEEP', 'main,gptq-4bit-128g-actorder_True').split(',')
cfgs = [dict(NW=4, occ=4, TW=1), dict(NW=4, occ=2, TW=2), dict(NW=4, occ=4, TW=2), dict(NW=2, occ=8, TW=2), dict(NW=8, occ=2, TW=2)]
table = []
for bits, gs in BRANCHES:
    name = branch_name(bits, gs); t0 = time.time()
    for shp in ('k', 'down'):
        for sym in (True, False):
            K, N = SHAPES[shp]
            t = random_gptq(K, N, bits, gs, dev, sym=sym)
            p = gm.prepare(*t, bits=bits, group_size=gs)
            for M in (1, 5, 16, 33):
                x = torch.randn(M, K, device=dev, dtype=torch.float16)
                y = mma_matmul(x, p, TW=2)
                e = relerr(y, gm.gptq_matmul_ref(x, *t, None, bits))
                rec(branch=name, metric=f'rel_err_{shp}_M{M}_{"sym" if sym else "asym"}', value=e, unit='relative')
                if not (e < 1e-2): print("FAILED", name, shp, M, sym, e, flush=True)
    layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(2)]
    byts = sum(gm.gptq_matmul_bytes(K, N, bits, gs, 1) for K, N in JOINED.values()) * LAYERS
    floor = byts / bw / 1e6
    for M in ((16,) if os.environ.get('M16ONLY') else (1, 16)):
        xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o': gm.gptq_matmul(x, p, x_sorted=srt)) for lay in layers for s, p in lay.items()]
        ms = graph_time(fns) / 2 * LAYERS
        rec(branch=name, metric=f'token_linear_time_M{M}_current', value=ms, unit='ms', floor=floor); table.append((name, M, 'current', ms, floor))
        for c in (cfgs if name in sweep_br else [dict(NW=4, occ=4, TW=1), dict(NW=4, occ=4, TW=2)]):
            try:
                fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o', c=c: mma_matmul(x, p, x_sorted=srt, **c)) for lay in layers for s, p in lay.items()]
                ms = graph_time(fns) / 2 * LAYERS
            except Exception as ex:
                print('ERR', name, M, c, type(ex).__name__, str(ex)[:300], flush=True); continue
            tag = f"mma_NW{c['NW']}_occ{c['occ']}_TW{c['TW']}"
            rec(branch=name, metric=f'token_linear_time_M{M}_{tag}', value=ms, unit='ms', floor=floor); table.append((name, M, tag, ms, floor))
    del layers; torch.cuda.empty_cache()
    print(f"{name}: {time.time() - t0:.0f}s", flush=True)
json.dump(recs, open(os.path.join(out, f"mma_proto_{card.replace(' ', '_')}.json"), 'w'), indent=1)
print(f"\n{card}; copy {bw:.0f} GB/s")
for name, M, tag, ms, fl in table: print(f"{name:<34}{M:>4} {tag:<18}{ms:>9.2f}{fl:>8.2f}{fl / ms:>8.1%}")
