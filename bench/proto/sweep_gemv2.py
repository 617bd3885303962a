"""Device run: the unit-packed fp16x2 decode kernel (bench/proto/gemv2.py) against the current kernel and baselines.

Correctness (asm path, 70B shapes, six branches, sym and asym), registers/spills, then M=1 per-token linear time
(fused qkv, o, fused gate_up, down; x 80 layers) for launch configurations; table last.
"""
import sys, os, json, time, itertools
from pathlib import Path
sys.path.insert(0, os.path.dirname(__file__)); sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch, triton
from triton.testing import do_bench
import gemv2 as g2
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, relerr
from qllama import gptq_matmul as gm

dev = torch.device('cuda'); torch.manual_seed(0)
card = torch.cuda.get_device_name(dev); sms = torch.cuda.get_device_properties(dev).multi_processor_count
OUT = Path(os.environ.get('OUT', '/tmp/out')); OUT.mkdir(parents=True, exist_ok=True)
recs = []
def rec(**r): recs.append(dict(card=card, **r)); print(json.dumps(recs[-1]), flush=True)
bw = copy_bandwidth(dev); rec(metric='copy_bandwidth', value=bw, unit='GB/s')
FUSED = {'qkv': (8192, 10240), 'o': (8192, 8192), 'gate_up': (8192, 57344), 'down': (28672, 8192)}
SEVEN = {'q': (8192, 8192), 'k': (8192, 1024), 'v': (8192, 1024), 'o': (8192, 8192), 'gate': (8192, 28672), 'up': (8192, 28672), 'down': (28672, 8192)}
BR = [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)]
def bname(b, gs): return {(4, -1): 'main', (4, 128): 'gptq-4bit-128g-actorder_True', (4, 32): 'gptq-4bit-32g-actorder_True',
                          (3, -1): 'gptq-3bit--1g-actorder_True', (3, 128): 'gptq-3bit-128g-actorder_True', (3, 32): 'gptq-3bit-32g-actorder_True'}[(b, gs)]

def random_asym(K, N, bits, gs):
    qw, qz, s, g = random_gptq(K, N, bits, gs, dev)
    return qw, qz, s, g

def random_sym(K, N, bits, gs):
    qw, _, s, g = random_gptq(K, N, bits, gs, dev)
    G = s.shape[0]
    from qllama.gptq import pack_cols
    qz = pack_cols(torch.full((G, N), 2 ** (bits - 1) - 1, dtype=torch.int32, device=dev), bits)
    return qw, qz, s, g

# 1. correctness of the asm path
t0 = time.time()
for bits, gs in BR:
    for shp in ('k', 'down'):
        K, N = SEVEN[shp]
        for sym in (True, False):
            t = (random_sym if sym else random_asym)(K, N, bits, gs)
            p = g2.Packed2(*t, bits=bits, group_size=gs)
            assert p.sym == sym
            for M in (1, 3):
                x = torch.randn(M, K, device=dev, dtype=torch.float16)
                y = torch.full((M, N), float('nan'), device=dev, dtype=torch.float16)
                y = g2.gemv2(x, p)
                e = relerr(y, gm.gptq_matmul_ref(x, *t, None, bits))
                rec(branch=bname(bits, gs), metric=f'rel_err_{shp}_M{M}_{"sym" if sym else "asym"}', value=e, unit='relative')
                assert e < 1e-2 and torch.isfinite(y).all(), (bits, gs, shp, sym, M, e)
print(f"correctness {time.time() - t0:.0f}s", flush=True)

# registers, spills and SASS of a few variants
for bits, gs, U, nw in [(4, 128, 2, 4), (4, -1, 4, 4), (3, 128, 2, 4)]:
    K, N = 8192, 8192
    p = g2.Packed2(*random_sym(K, N, bits, gs), bits=bits, group_size=gs)
    g2.gemv2(xs0 := torch.randn(1, K, device=dev, dtype=torch.float16), p, gathered=True, U=U, num_warps=nw)
    k = g2.LAST
    rec(branch=bname(bits, gs), metric=f'regs_U{U}_nw{nw}', value=k.n_regs, unit='registers', spills=k.n_spills)
    try:
        (OUT / f'sass_{bits}b_{gs}g_U{U}.txt').write_text(k.asm.get('sass', '') or '')
    except Exception as e:
        print('sass', e)

def layers_for(bits, gs, shapes, L, maker=random_sym):
    return [{s: g2.Packed2(*maker(K, N, bits, gs), bits=bits, group_size=gs) for s, (K, N) in shapes.items()} for _ in range(L)]

table = []
L = 2
xs = {K: torch.randn(1, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
def token_ms(layers, shapes, **kw):
    fns = [(lambda p=p, x=xs[shapes[s][0]]: g2.gemv2(x, p, gathered=True, **kw)) for lay in layers for s, p in lay.items()]
    return graph_time(fns) / L * 80

def floor_ms(bits, gs, shapes):
    return sum(gm.gptq_matmul_bytes(K, N, bits, gs, 1) for K, N in shapes.values()) * 80 / bw / 1e6

# 2. config sweep on two branches (fused shapes), per shape
best = {}
for bits, gs in [(4, 128), (3, 128)]:
    layers = layers_for(bits, gs, FUSED, L)
    for s, (K, N) in FUSED.items():
        res = []
        for U, nw, occ in itertools.product((1, 2, 4), (4, 8), (2, 4, 8)):
            tiles = -(-N // (128 * nw))
            split = max(1, min(K // 32 // U, round(occ * sms / tiles)))
            fns = [(lambda p=lay[s]: g2.gemv2(xs[K], p, gathered=True, U=U, num_warps=nw, split_k=split)) for lay in layers]
            try:
                us = graph_time(fns) / L * 1000
            except Exception as e:
                print('fail', bits, gs, s, U, nw, occ, str(e)[:300]); continue
            fl = gm.gptq_matmul_bytes(K, N, bits, gs, 1) / bw / 1e3
            res.append((us, U, nw, split))
            rec(branch=bname(bits, gs), metric=f'sweep_{s}_U{U}_nw{nw}_split{split}', value=us, unit='us', floor=fl, fraction_of_floor=fl / us)
        res.sort()
        best[(bits, s)] = res[0]
        print(bits, gs, s, 'best', res[:3], flush=True)
    del layers; torch.cuda.empty_cache()

def cfg_for(bits, s):
    us, U, nw, split = best[(bits if (bits, s) in best else 4, s)]
    return dict(U=U, num_warps=nw, split_k=split)

# 3. all six branches with the best per-shape config (fused shapes), gathered x and with the torch gather
for bits, gs in BR:
    layers = layers_for(bits, gs, FUSED, L)
    fns = [(lambda p=p, x=xs[FUSED[s][0]], c=cfg_for(bits, s): g2.gemv2(x, p, gathered=True, **c)) for lay in layers for s, p in lay.items()]
    ms = graph_time(fns) / L * 80
    fl = floor_ms(bits, gs, FUSED)
    rec(branch=bname(bits, gs), metric='token_linear_time_M1_fused_gathered', value=ms, unit='ms', floor=fl, fraction_of_floor=fl / ms)
    table.append((bname(bits, gs) + ' new fused', ms, fl))
    fns = [(lambda p=p, x=xs[FUSED[s][0]], c=cfg_for(bits, s): g2.gemv2(x, p, gathered=False, **c)) for lay in layers for s, p in lay.items()]
    ms = graph_time(fns) / L * 80
    rec(branch=bname(bits, gs), metric='token_linear_time_M1_fused_torchgather', value=ms, unit='ms', floor=fl, fraction_of_floor=fl / ms)
    table.append((bname(bits, gs) + ' new fused+gather', ms, fl))
    del layers; torch.cuda.empty_cache()
    # the current kernel, seven linears, same run
    old = [{s: gm.prepare(*random_sym(K, N, bits, gs), bits=bits, group_size=gs) for s, (K, N) in SEVEN.items()} for _ in range(L)]
    fns = [(lambda p=p, x=xs[SEVEN[s][0]]: gm.gptq_matmul(x, p)) for lay in old for s, p in lay.items()]
    ms = graph_time(fns) / L * 80
    fl7 = floor_ms(bits, gs, SEVEN)
    rec(branch=bname(bits, gs), metric='token_linear_time_M1_old', value=ms, unit='ms', floor=fl7, fraction_of_floor=fl7 / ms)
    table.append((bname(bits, gs) + ' old (7 linears)', ms, fl7))
    del old; torch.cuda.empty_cache()

# baseline: torch int4 128g, fused shapes
ws = []
for _ in range(L):
    lay = {}
    for s, (K, N) in FUSED.items():
        w = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev)
        lay[s] = (torch.ops.aten._convert_weight_to_int4pack(w, 8), torch.rand(K // 128, N, 2, device=dev, dtype=torch.bfloat16) * 0.01, K)
    ws.append(lay)
xb = {K: torch.randn(1, K, device=dev, dtype=torch.bfloat16) for K in (8192, 28672)}
fns = [(lambda wp=wp, sz=sz, x=xb[K]: torch.ops.aten._weight_int4pack_mm(x, wp, 128, sz)) for lay in ws for wp, sz, K in lay.values()]
ms = graph_time(fns) / L * 80
fl = floor_ms(4, 128, FUSED)
rec(branch='torch-int4-128g', metric='token_linear_time_M1_fused', value=ms, unit='ms', floor=fl, fraction_of_floor=fl / ms)
table.append(('torch int4 128g fused', ms, fl))
del ws; torch.cuda.empty_cache()

(OUT / f'proto_gemv2_{card.replace(" ", "_")}.json').write_text(json.dumps(recs, indent=1))
print(f"\n{card}, copy {bw:.0f} GB/s; M=1 linear time per token (x80 layers)")
for name, ms, fl in table: print(f"{name:<48}{ms:8.2f} ms  floor {fl:6.2f}  {fl / ms:6.1%}")
