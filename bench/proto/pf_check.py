"""Loads in flight, on the GPU: the fragment kernel (M = 16) with the next block's words and scales loaded before this
block's mma (as now) against without (`qllama/_old_gptq_matmul.py`, a copy of commit 6192444's module), at the new
split-K occupancy (8 programs per SM for gate/up, 4 for the rest); and the fp16x2 kernel (M = 1, loads one step
ahead) on the narrow layers with U = 1, 2, 4 units per step. 70B shapes, 4 layers' copies cycled, CUDA graphs.
    git show 6192444:qllama/gptq_matmul.py > qllama/_old_gptq_matmul.py   # the module before (not committed)
    PYTHONPATH=.:bench python bench/proto/pf_check.py
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as new
from qllama import _old_gptq_matmul as old
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS
dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
bw = copy_bandwidth(dev); print(card, f"copy {bw:.0f} GB/s", flush=True)
t = lambda fns: graph_time(fns) / len(fns) * 1e3
for bits, gs in [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)]:
    name = branch_name(bits, gs)
    layers = [{s: new.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
    for M in (16, 1):
        xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        for s, (K, N) in JOINED.items():
            x, p0 = xs[K], layers[0][s]
            cfg = new._launch_config(M, N, K, p0, dev)[0]
            r = dict(card=card, branch=name, M=M, shape=s, floor_us=new.gptq_matmul_bytes(K, N, bits, gs, M) / bw / 1e3, split=cfg['SPLIT_K'])
            y = new.gptq_matmul(x, p0, x_sorted=True)
            if M == 16:
                torch.testing.assert_close(y, old.gptq_matmul(x, p0, x_sorted=True, split_k=cfg['SPLIT_K']), rtol=2e-3, atol=2e-3)
                r['old_us'] = t([(lambda p=l[s]: old.gptq_matmul(x, p, x_sorted=True, split_k=cfg['SPLIT_K'])) for l in layers])
                r['new_us'] = t([(lambda p=l[s]: new.gptq_matmul(x, p, x_sorted=True)) for l in layers])
            elif N < 32768:
                for U in (1, 2, 4):
                    torch.testing.assert_close(new.gptq_matmul(x, p0, x_sorted=True, U=U), y, rtol=2e-3, atol=2e-3)
                    r[f'U{U}_us'] = t([(lambda p=l[s], U=U: new.gptq_matmul(x, p, x_sorted=True, U=U)) for l in layers])
            else: continue
            recs.append(r); print(json.dumps(r), flush=True)
    del layers; torch.cuda.empty_cache()
out = os.environ.get('OUT', 'bench/results'); os.makedirs(out, exist_ok=True)
open(os.path.join(out, f"pf_check_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))
print(f"\n{card}: M=16 per layer (4 joined shapes), us: without / with the loads one block ahead; M=1 narrow layers (qkv+o+down), us, by U")
for name in dict.fromkeys(r['branch'] for r in recs):
    a = [r for r in recs if r['branch'] == name and r['M'] == 16]; b = [r for r in recs if r['branch'] == name and r['M'] == 1]
    print(f"{name:<32} M16 old {sum(r['old_us'] for r in a):6.1f} new {sum(r['new_us'] for r in a):6.1f} | M1 " +
          " ".join(f"U{U} {sum(r[f'U{U}_us'] for r in b):5.1f}" for U in (1, 2, 4)))
