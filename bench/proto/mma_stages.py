"""Software-pipelining depth (num_stages) and occupancy of the fragment kernel at M = 16, 70B shapes, on the GPU."""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS
dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
def call(x, p, srt, stages, occ):
    K, N = p.in_features, p.out_features
    x2 = x if srt or p.perm is None else x.index_select(1, p.perm)
    M = x2.shape[0]
    cfg, tiles, upg = gm._launch_config(M, N, K, p, dev)
    if occ != 4:
        nb = -(-(-(-K // 32)) // 4); split = max(1, min(nb, round(occ * gm._n_sms(dev) / tiles)))
        cfg, tiles, upg = gm._launch_config(M, N, K, p, dev, split_k=split)
    y = torch.empty(M, N, dtype=x.dtype, device=dev)
    part = gm._workspace(dev, cfg['SPLIT_K'] * M * N) if cfg['SPLIT_K'] > 1 else y
    cnt = gm._counters(dev, tiles) if cfg['SPLIT_K'] > 1 else y
    xp = x2.view(torch.int32)
    kw = dict(num_stages=stages) if stages else {}
    gm._mma_kernel[(-(-N // cfg['BLOCK_N']), -(-M // 16), cfg['SPLIT_K'])](
        xp, p.qweight, p.zeros, p.scales, y, y, part, cnt, M, N, K, -(-K // 32), p.scales.shape[0], xp.stride(0), y.stride(0),
        p.zeros.shape[1], BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1, SYM=p.sym, ZERO_OFFSET=p.zero_offset, HAS_BIAS=False,
        ASM=True, NW=cfg['num_warps'], SPLIT_K=cfg['SPLIT_K'], ITERS=cfg['ITERS'], PF=cfg['PF'], num_warps=cfg['num_warps'], **kw)
    return y
bw = copy_bandwidth(dev)
table = []
for bits, gs in ((4, -1), (4, 128), (3, 128)):
    name = branch_name(bits, gs)
    layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(2)]
    xs = {K: torch.randn(16, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
    ref = {s: gm.gptq_matmul(xs[JOINED[s][0]], p, x_sorted=s != 'o') for s, p in layers[0].items()}
    floor = sum(gm.gptq_matmul_bytes(K, N, bits, gs, 16) for K, N in JOINED.values()) * LAYERS / bw / 1e6
    for stages in (None, 1, 2, 4):
        for occ in (4, 6):
            try:
                for s, p in layers[0].items():
                    assert torch.equal(call(xs[JOINED[s][0]], p, s != 'o', stages, 4), ref[s]) or stages is not None
                fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o': call(x, p, srt, stages, occ)) for lay in layers for s, p in lay.items()]
                ms = graph_time(fns) / 2 * LAYERS
            except Exception as e:
                print('ERR', name, stages, occ, type(e).__name__, str(e)[:200], flush=True); continue
            r = dict(card=card, branch=name, metric=f'token_linear_time_M16_stages{stages}_occ{occ}', value=ms, unit='ms', floor=floor, fraction_of_floor=floor / ms)
            recs.append(r); table.append((name, stages, occ, ms, floor))
    del layers; torch.cuda.empty_cache()
json.dump(recs, open(os.path.join(os.environ.get('OUT', '/tmp'), f"mma_stages_{card.replace(' ', '_')}.json"), 'w'), indent=1)
print(f"{card}; copy {bw:.0f} GB/s")
for name, st, occ, ms, fl in table: print(f"{name:<32} stages={st} occ={occ} {ms:8.2f} ms {fl / ms:6.1%}")
