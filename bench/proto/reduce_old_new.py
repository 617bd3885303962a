"""Split-K tail: the serial reduction loop (before) against chunked loads of 8 splits' partials at once (after).

Times `gptq_matmul` at M = 1 and M = 16 on a 70B layer's four joined shapes, default launch and two split-K
occupancies, with the module as it was (`qllama/_old_gptq_matmul.py`, a copy of the previous commit's) and as it is.
    git show 6192444:qllama/gptq_matmul.py > qllama/_old_gptq_matmul.py   # the module before (not committed)
    PYTHONPATH=.:bench python bench/proto/reduce_old_new.py
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as new
from qllama import _old_gptq_matmul as old
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS
dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
bw = copy_bandwidth(dev); print(card, f"copy {bw:.0f} GB/s", flush=True)
def split_for(gm, M, K, N, p, occ):
    if occ is None: return None
    cfg, tiles, _ = gm._launch_config(M, N, K, p, dev)
    return max(1, min(-(-K // 32) // cfg['U'], round(occ * gm._n_sms(dev) / tiles)))
for bits, gs in [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)]:
    name = branch_name(bits, gs)
    layers = [{s: new.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
    for M in (1, 16):
        xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        for s, (K, N) in JOINED.items():
            floor_us = new.gptq_matmul_bytes(K, N, bits, gs, M) / bw / 1e3
            for occ in (None, 2, 4, 8):
                row = dict(card=card, branch=name, M=M, shape=s, occ=occ, floor_us=floor_us)
                for tag, gm in (('old', old), ('new', new)):
                    sk = split_for(gm, M, K, N, layers[0][s], occ)
                    y = gm.gptq_matmul(xs[K], layers[0][s], x_sorted=True, split_k=sk)
                    if tag == 'new': torch.testing.assert_close(y, yo, rtol=2e-3, atol=2e-3)
                    yo = y
                    row[tag + '_us'] = graph_time([(lambda p=lay[s], x=xs[K], gm=gm, sk=sk: gm.gptq_matmul(x, p, x_sorted=True, split_k=sk)) for lay in layers]) / 4 * 1e3
                recs.append(row); print(json.dumps(row), flush=True)
    del layers; torch.cuda.empty_cache()
out = os.environ.get('OUT', 'bench/results'); os.makedirs(out, exist_ok=True)
open(os.path.join(out, f"reduce_old_new_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))
print(f"\n{card}: token linear time (4 joined shapes x {LAYERS}), ms; default launch, and best occupancy per shape")
for name in dict.fromkeys(r['branch'] for r in recs):
    for M in (1, 16):
        rs = [r for r in recs if r['branch'] == name and r['M'] == M]
        fl = sum(r['floor_us'] for r in rs if r['occ'] is None) * LAYERS / 1e3
        d = {t: sum(r[t + '_us'] for r in rs if r['occ'] is None) * LAYERS / 1e3 for t in ('old', 'new')}
        b = {t: sum(min(r[t + '_us'] for r in rs if r['shape'] == s) for s in JOINED) * LAYERS / 1e3 for t in ('old', 'new')}
        occ = {s: min((r for r in rs if r['shape'] == s), key=lambda r: r['new_us'])['occ'] for s in JOINED}
        print(f"{name:<32} M={M:<3} floor {fl:5.2f}  old {d['old']:6.2f} ({fl/d['old']:.0%}) new {d['new']:6.2f} ({fl/d['new']:.0%}) | best old {b['old']:6.2f} new {b['new']:6.2f} ({fl/b['new']:.0%}) occ {occ}")
