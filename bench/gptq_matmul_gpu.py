"""GPU benchmark of `qllama.gptq_matmul` at CodeLlama-70B's shapes, for the six GPTQ branches of TheBloke's repo.

Run on a machine with one CUDA GPU, from the repository root:

    PYTHONPATH=. python bench/gptq_matmul_gpu.py --out $OUT

(qllama imports fastcore: on the device machine, carry its wheel in `.whl/` and install it to a --target first.)

For each branch (4-bit and 3-bit; no group, 128g, 32g; all act-order) it builds random GPTQ tensors on the GPU
at the seven linear shapes of one 70B layer, checks the kernel against the fp32 reference (relative error),
measures the device-to-device copy bandwidth, and times the linear layers of one decoded token (one layer × 80) at
M=1 and M=16 with CUDA graphs and `triton.testing.do_bench` medians, two ways: as the fast path runs them (q/k/v
joined, gate/up joined, inputs already in sorted order except o's, which is gathered: 4 matmuls + 1 gather per
layer) and as seven separate linears that each gather their input. `--sweep` also times launch configurations
per shape. Baselines in the same run: fp16 cuBLAS (`F.linear`, seven linears) and torch's int4 kernel
(`_weight_int4pack_mm`, gpt-fast's path). JSON records (card, branch, metric, value, unit, floor,
fraction_of_floor) go to `--out` (default `bench/results/`); a short table is printed last.
"""
import argparse, json, os, time
from pathlib import Path
import torch
import torch.nn.functional as F
from triton.testing import do_bench
from qllama import gptq_matmul as gm

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 8192, 28672, 64, 8, 128, 80
SHAPES = {  # name: (in_features, out_features)
    'q': (HIDDEN, HEADS * HEAD_DIM), 'k': (HIDDEN, KV_HEADS * HEAD_DIM), 'v': (HIDDEN, KV_HEADS * HEAD_DIM),
    'o': (HEADS * HEAD_DIM, HIDDEN), 'gate': (HIDDEN, INTER), 'up': (HIDDEN, INTER), 'down': (INTER, HIDDEN)}
JOINED = {'qkv': (HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM), 'o': (HEADS * HEAD_DIM, HIDDEN), 'gate_up': (HIDDEN, 2 * INTER),
          'down': (INTER, HIDDEN)}
BRANCHES = [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)]

def branch_name(bits, gs):
    "TheBloke's branch name of a (bits, group size) pair, all act-order."
    return 'main' if (bits, gs) == (4, -1) else f"gptq-{bits}bit-{gs if gs != -1 else '-1'}g-actorder_True"

def n_groups(K, gs): return 1 if gs == -1 else -(-K // gs)

def random_gptq(K, N, bits, gs, dev, sym=True):
    "Random AutoGPTQ tensors (v1 zeros, symmetric as the Code Llama branches or random, act-order g_idx) built on `dev`."
    G = n_groups(K, gs)
    qweight = torch.randint(-2**31, 2**31 - 1, (K * bits // 32, N), dtype=torch.int32, device=dev)
    if sym:
        from qllama.gptq import pack_cols
        qzeros = pack_cols(torch.full((G, N), 2 ** (bits - 1) - 1, dtype=torch.int32, device=dev), bits)
    else:
        qzeros = torch.randint(-2**31, 2**31 - 1, (G, -(-N * bits // 32)), dtype=torch.int32, device=dev)
    scales = (torch.rand(G, N, device=dev) * 0.01 + 0.002).half()
    g = torch.zeros(K, dtype=torch.int32, device=dev) if gs == -1 else torch.arange(K, device=dev, dtype=torch.int32) // gs
    g_idx = g[torch.randperm(K, device=dev)] if gs != -1 else g
    return qweight, qzeros, scales, g_idx

def graph_time(fns):
    "Median ms of one replay of a CUDA graph that runs `fns` in order."
    for f in fns: f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns: f()
    return do_bench(g.replay, warmup=50, rep=300, return_mode='median')

def copy_bandwidth(dev):
    "Device-to-device copy of 2 GiB, counting bytes read plus bytes written, GB/s."
    src = torch.randn(2**29, device=dev); dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode='median')
    return 2 * 2**31 / ms / 1e6

def relerr(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--layers', type=int, default=2, help='distinct layers cycled through, so weights never sit in L2')
    ap.add_argument('--sweep', default='', help='comma-separated branches whose launch configurations to time per shape')
    ap.add_argument('--branches', default='all')
    ap.add_argument('--no-baselines', action='store_true')
    args = ap.parse_args()
    dev = torch.device('cuda')
    torch.manual_seed(0)
    card = torch.cuda.get_device_name(dev)
    props = torch.cuda.get_device_properties(dev)
    print(f"card: {card}, {props.multi_processor_count} SMs, L2 {props.L2_cache_size >> 20} MiB; torch {torch.__version__}", flush=True)
    recs, table = [], []
    def rec(branch, metric, value, unit, floor=None):
        r = dict(card=card, branch=branch, metric=metric, value=value, unit=unit, floor=floor,
                 fraction_of_floor=None if floor is None or not value else (floor / value if unit in ('ms', 'us') else value / floor))
        recs.append(r); print(json.dumps(r), flush=True)
    bw = copy_bandwidth(dev)
    rec('-', 'copy_bandwidth', bw, 'GB/s')
    branches = BRANCHES if args.branches == 'all' else [b for b in BRANCHES if branch_name(*b) in args.branches.split(',')]
    L = args.layers
    byts = lambda shapes, bits, gs, M: sum(gm.gptq_matmul_bytes(K, N, bits, gs, M) for K, N in shapes.values()) * LAYERS

    for bits, gs in branches:
        name = branch_name(bits, gs)
        t0 = time.time()
        # correctness at real shapes: fresh random tensors (symmetric and not), the kernel against the fp32 reference
        for shp in ('k', 'down'):
            for sym in (True, False):
                K, N = SHAPES[shp]
                t = random_gptq(K, N, bits, gs, dev, sym=sym)
                p = gm.prepare(*t, bits=bits, group_size=gs)
                assert p.sym == sym
                for M in (1, 3, 5, 16, 300, 600):
                    x = torch.randn(M, K, device=dev, dtype=torch.float16)
                    y = gm.gptq_matmul(x, p)
                    e = relerr(y, gm.gptq_matmul_ref(x, *t, None, bits))
                    rec(name, f'rel_err_{shp}_M{M}_{"sym" if sym else "asym"}', e, 'relative')
                    assert e < 1e-2 and torch.isfinite(y).all(), f"{name} {shp} M={M} sym={sym}: rel err {e}"
                del t, p
        # the fast path's matmuls: joined, inputs sorted (o's gathered by gptq_matmul)
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()}
                  for _ in range(L)]
        for M in (1, 16, 2048):
            xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (HIDDEN, INTER)}
            fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o': gm.gptq_matmul(x, p, x_sorted=srt)) for lay in layers for s, p in lay.items()]
            ms = graph_time(fns) / L * LAYERS
            floor_ms = byts(JOINED, bits, gs, M) / bw / 1e6
            rec(name, f'token_linear_time_M{M}', ms, 'ms', floor_ms)
            table.append((name, M, ms, floor_ms))
            variants = {1: {}, 16: dict(dot=dict(kernel='dot')), 2048: dict(dot=dict(kernel='dot'))}[M]
            for vname, kw in variants.items():                                 # launch variants to compare
                fns = [(lambda p=p, x=xs[JOINED[s][0]], srt=s != 'o': gm.gptq_matmul(x, p, x_sorted=srt, **kw)) for lay in layers for s, p in lay.items()]
                ms = graph_time(fns) / L * LAYERS
                rec(name, f'token_linear_time_M{M}_{vname}', ms, 'ms', floor_ms)
                table.append((name + f' [{vname}]', M, ms, floor_ms))
            if name in args.sweep.split(','):
                for s in JOINED: sweep(layers, s, M, xs[JOINED[s][0]], bits, gs, bw, name, rec)
        del layers; torch.cuda.empty_cache()
        # seven separate linears, each gathering its input
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in SHAPES.items()}
                  for _ in range(L)]
        xs = {K: torch.randn(1, K, device=dev, dtype=torch.float16) for K in (HIDDEN, INTER)}
        fns = [(lambda p=p, x=xs[SHAPES[s][0]]: gm.gptq_matmul(x, p)) for lay in layers for s, p in lay.items()]
        ms = graph_time(fns) / L * LAYERS
        floor_ms = byts(SHAPES, bits, gs, 1) / bw / 1e6
        rec(name, 'token_linear_time_M1_seven_gathered', ms, 'ms', floor_ms)
        table.append((name + ' [7 linears]', 1, ms, floor_ms))
        del layers; torch.cuda.empty_cache()
        print(f"{name}: {time.time() - t0:.0f}s", flush=True)

    # baselines: fp16 cuBLAS and torch's int4 (tinygemm) kernel
    for M in (() if args.no_baselines else (1, 16, 2048)):
        ws = [{s: torch.randn(N, K, device=dev, dtype=torch.float16) * 0.01 for s, (K, N) in SHAPES.items()} for _ in range(L)]
        xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (HIDDEN, INTER)}
        fns = [(lambda w=w, x=xs[w.shape[1]]: F.linear(x, w)) for lay in ws for w in lay.values()]
        ms = graph_time(fns) / L * LAYERS
        b = sum(K * N * 2 + M * (K + N) * 2 for K, N in SHAPES.values()) * LAYERS
        rec('cublas-fp16', f'token_linear_time_M{M}', ms, 'ms', b / bw / 1e6)
        table.append(('cublas-fp16', M, ms, b / bw / 1e6))
        del ws
        for gsz in ((256, 128, 32) if M <= 16 else ()):
            try:
                ws = []
                for _ in range(L):
                    lay = {}
                    for s, (K, N) in JOINED.items():
                        w = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev)
                        wp = torch.ops.aten._convert_weight_to_int4pack(w, 8)
                        sz = torch.rand(K // gsz, N, 2, device=dev, dtype=torch.bfloat16) * 0.01
                        lay[s] = (wp, sz, K)
                    ws.append(lay)
                xb = {K: torch.randn(M, K, device=dev, dtype=torch.bfloat16) for K in (HIDDEN, INTER)}
                fns = [(lambda wp=wp, sz=sz, x=xb[K]: torch.ops.aten._weight_int4pack_mm(x, wp, gsz, sz))
                       for lay in ws for wp, sz, K in lay.values()]
                ms = graph_time(fns) / L * LAYERS
                b = sum(K * N / 2 + (K // gsz) * N * 4 + M * (K + N) * 2 for K, N in JOINED.values()) * LAYERS
                rec(f'torch-int4-{gsz}g', f'token_linear_time_M{M}', ms, 'ms', b / bw / 1e6)
                table.append((f'torch-int4-{gsz}g (joined)', M, ms, b / bw / 1e6))
                del ws
            except (RuntimeError, NotImplementedError) as e:
                print(f"torch int4 kernel unavailable ({gsz}g, M={M}): {str(e).splitlines()[0]}")
        torch.cuda.empty_cache()

    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    slug = card.replace(' ', '_')
    (out / f'gptq_matmul_{slug}.json').write_text(json.dumps(recs, indent=1))
    print(f"\n{card}; copy bandwidth {bw:.0f} GB/s; linear time of one token (x {LAYERS} layers), do_bench median of CUDA-graph replays")
    print(f"{'branch':<40}{'M':>4}{'ms/token':>10}{'floor ms':>10}{'of floor':>10}")
    for name, M, ms, fl in table:
        print(f"{name:<40}{M:>4}{ms:>10.2f}{fl:>10.2f}{fl / ms:>10.1%}")

def sweep(layers, s, M, x, bits, gs, bw, name, rec):
    "Time launch configurations of one joined shape, cycling through the distinct layers' copies."
    K, N = JOINED[s]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    cfgs = ([dict(U=U, num_warps=nw, occ=occ) for U in (1, 2, 4) for nw in (4, 8) for occ in (2, 4)] if M == 1 else
            [dict(U=U, block_n=bn, num_warps=4, occ=occ) for U in (1, 2) for bn in (32, 64, 128) for occ in (1, 2)])
    for c in cfgs:
        occ = c.pop('occ')
        bn = c.get('block_n', 128 * c['num_warps'])
        tiles = -(-N // bn) * (1 if M == 1 else -(-M // 16))
        split = max(1, min(K // 32 // c['U'], round(occ * sms / tiles)))
        try:
            fns = [(lambda p=lay[s]: gm.gptq_matmul(x, p, x_sorted=True, split_k=split, **c)) for lay in layers]
            us = graph_time(fns) / len(layers) * 1000
        except Exception as e:
            print(f"sweep {name} {s} M={M} {c}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"); continue
        rec(name, f"sweep_{s}_M{M}_" + "_".join(f"{k}{v}" for k, v in c.items()) + f"_split{split}", us, 'us',
            gm.gptq_matmul_bytes(K, N, bits, gs, M) / bw / 1e3)

if __name__ == '__main__':
    main()
