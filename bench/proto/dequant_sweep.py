"""Tile sweep of the prefill path's `_dequant_kernel` (GB/s of fp16 written + packed read) at the 70B's two largest
shapes, and the M = 2048 token linears with 2**27- or 2**28-value chunks. Run on the GPU from the repository root."""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from triton.testing import do_bench
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS
dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
def rec(**r): r['card'] = card; recs.append(r); print(json.dumps(r), flush=True)
bw = copy_bandwidth(dev); rec(metric='copy_bandwidth', value=bw, unit='GB/s')
for bits, gs in ((4, -1), (4, 128), (3, 128)):
    name = branch_name(bits, gs)
    for s in ('gate_up', 'down'):
        K, N = JOINED[s]
        p = gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs)
        nc = min(N, (1 << 27) // K // 128 * 128)
        for U in (1, 2, 4):
            for BN in (64, 128, 256):
                for nw in (4, 8):
                    ms = do_bench(lambda: gm.dequantize_sorted(p, 0, nc, U=U, BN=BN, num_warps=nw), warmup=20, rep=100, return_mode='median')
                    rec(branch=name, metric=f'dequant_{s}_U{U}_BN{BN}_nw{nw}', value=K * nc * (2 + bits / 8) / ms / 1e6, unit='GB/s')
        del p
    layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(2)]
    xs = {K: torch.randn(2048, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
    for ch in (27, 28):
        fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o': gm.gptq_matmul(x, p, x_sorted=srt, chunk=max(128, min(p.out_features, (1 << ch) // p.in_features // 128 * 128))))
               for lay in layers for s, p in lay.items()]
        ms = do_bench(lambda: [f() for f in fns], warmup=3, rep=20, return_mode='median') / 2 * LAYERS
        rec(branch=name, metric=f'token_linear_time_M2048_chunk2^{ch}', value=ms, unit='ms')
    del layers; torch.cuda.empty_cache()
json.dump(recs, open(os.path.join(os.environ.get('OUT', '/tmp'), f"dequant_sweep_{card.replace(' ', '_')}.json"), 'w'), indent=1)
best = {}
for r in recs:
    if r['metric'].startswith('dequant_'):
        k = (r['branch'], r['metric'].split('_U')[0]); best[k] = max(best.get(k, (0, '')), (r['value'], r['metric']))
for k, v in best.items(): print(k, f"{v[0]:.0f} GB/s", v[1])
for r in recs:
    if 'chunk' in r['metric']: print(r['branch'], r['metric'], f"{r['value']:.1f} ms")
