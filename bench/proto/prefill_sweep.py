"""Device sweep: tensor-core tile shapes of gptq_matmul at M=2048 (one 70B layer's joined linears, 4-bit)."""
import sys, os, json, itertools
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from gptq_matmul_gpu import random_gptq, graph_time, JOINED
from qllama import gptq_matmul as gm
from triton.testing import do_bench
dev = torch.device('cuda'); card = torch.cuda.get_device_name()
res = []
for bits, gs in ((4, -1), (4, 128)):
    layer = {s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()}
    xs = {K: torch.randn(2048, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
    ws = {s: torch.randn(N, K, device=dev, dtype=torch.float16) * 0.01 for s, (K, N) in JOINED.items()}
    cub = sum(do_bench(lambda w=w, s=s: torch.nn.functional.linear(xs[JOINED[s][0]], w), return_mode='median') for s, w in ws.items())
    del ws
    for bm, bn, U, nw in [(128, 128, 2, 8), (128, 128, 4, 8), (128, 256, 2, 8), (64, 128, 4, 4), (128, 64, 4, 4), (256, 128, 2, 8), (64, 256, 2, 8)]:
        try:
            ms = sum(do_bench(lambda p=p, s=s: gm.gptq_matmul(xs[JOINED[s][0]], p, x_sorted=True, block_m=bm, block_n=bn, U=U, num_warps=nw),
                              return_mode='median') for s, p in layer.items())
        except Exception as e:
            print(bits, gs, bm, bn, U, nw, 'fail', str(e)[:200]); continue
        res.append(dict(card=card, bits=bits, group_size=gs, BM=bm, BN=bn, U=U, num_warps=nw, layer_ms=ms, cublas_layer_ms=cub, of_cublas=cub / ms))
        print(f"{bits}b {gs:>4}g BM{bm} BN{bn} U{U} nw{nw}: {ms:.3f} ms/layer, cuBLAS {cub:.3f} -> {cub / ms:.1%}", flush=True)
    del layer; torch.cuda.empty_cache()
open(os.path.join(os.environ.get('OUT', '/tmp'), f'prefill_sweep_{card.replace(" ", "_")}.json'), 'w').write(json.dumps(res, indent=1))
