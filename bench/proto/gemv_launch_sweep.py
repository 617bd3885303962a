"""Launch sweep of the batch-1 (fp16x2) GPTQ kernel per joined 70B shape, against `_launch_config`'s choice.

The M = 1 kernel reaches 86-90% of its floor on gate/up but 40-65% on q/k/v, o and down (`gemv_pdl_NVIDIA_H200.json`),
and ncu saw the o launch issue-bound with two warps per scheduler (168 registers a thread, 0.65 waves). The sweeps
behind the launcher's choices ran on earlier kernels with coarse split-K steps (16 / 33 / 66). This one times the
current kernel at every (warps, columns per thread, units per step, programs per SM) of a grid, split-K taken as the
divisor of the steps nearest the programs wanted (EVEN, no masks) when one lies within 1.5x, else the plain split.

Compiling is the slow part (SPLIT_K and ITERS are compile-time constants), so worker processes compile every
configuration first (Triton's on-disk cache), then the main process times each from CUDA-graph replays cycling
through 3 distinct layers (the weights never sit in L2). Every configuration is checked against the default one.

    PYTHONPATH=. python bench/proto/gemv_launch_sweep.py --out $OUT [--branches 4:-1,3:128] [--deadline 420]

`--m 16` sweeps the fragment kernel (3-16 rows) instead: warps 4 / 8, folded scales or not (where a block of 128 rows
lies in one group), split-K for 0.5 to 8 programs per SM; records go to `mma_launch_sweep_<card>.json`. With
`--regs 96,80` it sweeps instead register caps (`maxnreg`: more resident programs per SM, at the price of spills)
against split-K for 3 to 8 programs per SM, 4 warps, the default folding (`mma_regs_<card>.json`).

`--confirm` times, per branch and shape, the launcher's choice against its choice before this sweep (`old_launch`),
alternating the two three times in one process, and checks that they agree.
"""
import argparse, itertools, json, math, multiprocessing as mp, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

SHAPES = ('qkv', 'o', 'down', 'gate_up')

def configs(s, K, N, bits, gs, sms, M=1, regs=None):
    "The launch overrides to try for one shape: dicts of gptq_matmul's launch keywords."
    n_units, upg = K // 32, (gs // 32 if gs != -1 else 1)
    out, seen = [], set()
    if M > 2 and regs:                                                     # register caps against programs per SM
        for r, per_sm in itertools.product([None] + regs, (3, 4, 5, 6, 8)):
            kw = dict(num_warps=4, split_k=max(1, min(n_units // 4, round(per_sm * sms / -(-N // 128)))), maxnreg=r)
            key = tuple(sorted(kw.items(), key=str))
            if key not in seen: seen.add(key); out.append(kw)
        return out
    if M > 2:                                                              # the fragment kernel: 4 units a step, 32 columns a warp
        folds = (False, True) if gs == -1 or gs % 128 == 0 else (False,)
        for nw, fold, per_sm in itertools.product((4, 8), folds, (0.5, 1, 2, 3, 4, 6, 8)):
            tiles = -(-N // (32 * nw))
            kw = dict(num_warps=nw, fold=fold, split_k=max(1, min(n_units // 4, round(per_sm * sms / tiles))))
            key = tuple(sorted(kw.items()))
            if key not in seen: seen.add(key); out.append(kw)
        return out
    grid = ([(8, 4, U) for U in (1, 2)] + [(4, 4, 2), (8, 2, 2)] if s == 'gate_up' else
            [(nw, cpt, U) for nw in (4, 8) for cpt in (2, 4) for U in (1, 2, 4)])
    for (nw, cpt, U), per_sm in itertools.product(grid, (2, 3, 4, 6) if s != 'gate_up' else (3, 4, 6)):
        if gs != -1 and U % upg and upg % U: continue
        bn = 32 * nw * cpt
        if N % bn or n_units % U: continue
        tiles, steps = N // bn, n_units // U
        want = per_sm * sms / tiles
        d = min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: abs(math.log(d / want)))
        kw = dict(num_warps=nw, block_n=bn, U=U)
        kw.update(split_k=d, even=True) if max(d / want, want / d) < 1.5 else kw.update(split_k=max(1, round(want)), even=False)
        key = tuple(sorted(kw.items()))
        if key not in seen: seen.add(key); out.append(kw)
    return out

def old_launch(N, K, bits, gs, sms):
    "The launch `_launch_config` chose for M = 1 before this sweep (commit 6e94733), as explicit overrides."
    n_units, upg = K // 32, (gs // 32 if gs != -1 else 1)
    wide, deep = N >= 32768, K >= 2 * N
    nw = 8 if wide and bits == 4 else 4
    bn, U = 128 * nw, 1 if wide else 4
    if gs != -1 and U % upg and upg % U: U = 1
    target = ((4 if bits == 4 else 8) if wide else (3.5 if deep else 2)) * sms
    tiles, steps = N // bn, n_units // U
    kw = dict(num_warps=nw, block_n=bn, U=U, split_k=max(1, min(steps, round(target / tiles))), even=False)
    if wide or deep:
        want = target / tiles
        d = min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: abs(math.log(d / want)))
        if max(d / want, want / d) < 1.5: kw.update(split_k=d, even=True)
    return kw

def confirm(args):
    "Old launch against the launcher's choice, per branch and shape, alternated in one process."
    import statistics, torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import JOINED, branch_name, graph_time, copy_bandwidth, relerr
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    bw = copy_bandwidth(dev); recs = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for bits, gs in [tuple(int(v) for v in b.split(':')) for b in args.branches.split(',')]:
        name = branch_name(bits, gs); layers, xs = setup(bits, gs, dev, 3); tot = {'old': 0.0, 'new': 0.0}
        for s in SHAPES:
            K, N = JOINED[s]; x = xs[K]; floor = gm.gptq_matmul_bytes(K, N, bits, gs, 1) / bw / 1e3
            kws = {'old': old_launch(N, K, bits, gs, sms), 'new': {}}
            e = relerr(gm.gptq_matmul(x, layers[0][s], x_sorted=True), gm.gptq_matmul(x, layers[0][s], x_sorted=True, **kws['old']))
            assert e < 2e-3, f"{name} {s}: new launch vs old, relative error {e:.1e}"
            ts = {k: [] for k in kws}
            for _ in range(3):
                for k, kw in kws.items():
                    ts[k].append(graph_time([(lambda p=lay[s], kw=kw: gm.gptq_matmul(x, p, x_sorted=True, **kw)) for lay in layers]) / 3 * 1e3)
            cfg = gm._launch_config(1, N, K, layers[0][s], dev)[0]
            for k in kws:
                us = statistics.median(ts[k]); tot[k] += us
                recs.append(dict(card=card, branch=name, shape=s, metric=f'M1_us_{k}_launch', value=us, unit='us', floor=floor,
                                 fraction_of_floor=floor / us, runs=ts[k], relerr_new_vs_old=e,
                                 launch=kws[k] or dict(num_warps=cfg['num_warps'], block_n=cfg['BLOCK_N'], U=cfg['U'], split_k=cfg['SPLIT_K'], even=cfg['EVEN'])))
            print(f"{name[:16]:<16} {s:<7} old {statistics.median(ts['old']):6.1f} new {statistics.median(ts['new']):6.1f} us  floor {floor:5.1f}", flush=True)
        for k in tot:
            recs.append(dict(card=card, branch=name, metric=f'token_linear_time_M1_{k}_launch', value=tot[k] * 80 / 1e3, unit='ms'))
        print(f"{name[:16]:<16} layer x 80: old {tot['old'] * 0.08:.2f} ms, new {tot['new'] * 0.08:.2f} ms", flush=True)
        del layers; torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    open(os.path.join(args.out, f"gemv_launch_confirm_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(records=recs), indent=1))

def setup(bits, gs, dev, n_layers, M=1):
    import torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import random_gptq, JOINED
    torch.manual_seed(0)
    layers = [{s: gm.prepare(*random_gptq(*JOINED[s], bits, gs, dev), bits=bits, group_size=gs) for s in SHAPES} for _ in range(n_layers)]
    xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
    return layers, xs

def compile_worker(jobs, M=1):
    "Compile (by one call each) the configurations `jobs`: [(bits, gs, shape, kw)] at `M` rows."
    import torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import JOINED
    dev = torch.device('cuda'); cache = {}
    for bits, gs, s, kw in jobs:
        if (bits, gs) not in cache: cache[(bits, gs)] = setup(bits, gs, dev, 1, M)
        layers, xs = cache[(bits, gs)]
        try: gm.gptq_matmul(xs[JOINED[s][0]], layers[0][s], x_sorted=True, **kw)
        except Exception as e: print(f"compile {bits}:{gs} {s} {kw}: {type(e).__name__}: {str(e)[:200]}", flush=True)
    torch.cuda.synchronize()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='4:-1,3:128,4:128,3:-1,4:32,3:32')
    ap.add_argument('--shapes', default=','.join(SHAPES))
    ap.add_argument('--workers', type=int, default=12)
    ap.add_argument('--deadline', type=float, default=420, help='seconds after which no new configuration is timed')
    ap.add_argument('--confirm', action='store_true', help='the launcher against its old choice, per shape (M = 1)')
    ap.add_argument('--m', type=int, default=1, help='rows: 1 (the fp16x2 kernel) or 3-16 (the fragment kernel)')
    ap.add_argument('--regs', default='', help='with --m > 2: register caps to sweep (maxnreg), e.g. 96,80')
    args = ap.parse_args()
    if args.confirm: return confirm(args)
    t0 = time.time()
    import torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import JOINED, branch_name, graph_time, copy_bandwidth, relerr
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    branches = [tuple(int(v) for v in b.split(':')) for b in args.branches.split(',')]
    shapes = args.shapes.split(',')
    M = args.m
    regs = [int(r) for r in args.regs.split(',') if r]
    plan = [(bits, gs, s, kw) for bits, gs in branches for s in shapes for kw in configs(s, *JOINED[s], bits, gs, sms, M, regs)]
    print(f"{card}: {len(plan)} configurations, compiling in {args.workers} processes", flush=True)
    ctx = mp.get_context('spawn')
    procs = [ctx.Process(target=compile_worker, args=(plan[i::args.workers], M)) for i in range(args.workers)]
    for p in procs: p.start()
    for p in procs: p.join()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)
    bw = copy_bandwidth(dev)
    recs = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    path = os.path.join(args.out, f"{'gemv_launch_sweep' if M <= 2 else 'mma_regs' if regs else 'mma_launch_sweep'}_{card.replace(' ', '_')}.json")
    os.makedirs(args.out, exist_ok=True)
    for bits, gs in branches:
        name = branch_name(bits, gs)
        layers, xs = setup(bits, gs, dev, 3, M)
        for s in shapes:
            K, N = JOINED[s]
            floor = gm.gptq_matmul_bytes(K, N, bits, gs, M) / bw / 1e3
            x = xs[K]; ref = gm.gptq_matmul(x, layers[0][s], x_sorted=True)
            d, _, _ = gm._launch_config(M, N, K, layers[0][s], dev)
            us0 = graph_time([(lambda p=lay[s]: gm.gptq_matmul(x, p, x_sorted=True)) for lay in layers]) / 3 * 1e3
            launch = (dict(num_warps=d['num_warps'], block_n=d['BLOCK_N'], U=d['U'], split_k=d['SPLIT_K'], even=d['EVEN']) if M <= 2 else
                      dict(num_warps=d['num_warps'], fold=d['FOLD'], split_k=d['SPLIT_K']))
            recs.append(dict(card=card, branch=name, shape=s, M=M, config='default', launch=launch, value=us0, unit='us', floor=floor,
                             fraction_of_floor=floor / us0))
            print(f"{name[:16]:<16} {s:<7} default {recs[-1]['launch']} {us0:6.1f} us {floor / us0:4.0%}", flush=True)
            best = (us0, 'default')
            for kw in configs(s, K, N, bits, gs, sms, M, regs):
                if time.time() - t0 > args.deadline: break
                try:
                    e = relerr(gm.gptq_matmul(x, layers[0][s], x_sorted=True, **kw), ref)
                    assert e < 2e-3, f"relative error to the default launch {e:.1e}"
                    us = graph_time([(lambda p=lay[s]: gm.gptq_matmul(x, p, x_sorted=True, **kw)) for lay in layers]) / 3 * 1e3
                except Exception as ex:
                    print(f"{name} {s} {kw}: {type(ex).__name__}: {str(ex).splitlines()[0][:200]}", flush=True); continue
                recs.append(dict(card=card, branch=name, shape=s, M=M, config='sweep', launch=kw, value=us, unit='us', floor=floor,
                                 fraction_of_floor=floor / us, relerr_to_default=e))
                if us < best[0]: best = (us, kw)
            print(f"{name[:16]:<16} {s:<7} best {best[1]} {best[0]:6.1f} us {floor / best[0]:4.0%} (default {us0:.1f})", flush=True)
            open(path, 'w').write(json.dumps(dict(records=recs), indent=1))
        del layers; torch.cuda.empty_cache()
    open(path, 'w').write(json.dumps(dict(records=recs), indent=1))
    print(f"done in {time.time() - t0:.0f} s", flush=True)

if __name__ == '__main__': main()
