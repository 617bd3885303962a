"""L2 prefetch inside the GPTQ kernels, on the GPU: each program asks L2 for the weights (and group scales) of the
step or block `pfd` ahead of the one its registers load next (`gptq_matmul(..., pfd=d)`, `gptq_matmul.MMA_PREFETCH`).

Part 1 (`--shapes`): the four joined 70B shapes of a layer at M = 1 (the fp16x2 kernel, whose prefetch was tried in
a first version and removed: `pfd` no longer changes it) and M = 16 (the fragment kernel), for each branch given, at
pfd = 0 (none) and the distances in `--pfds`: the same bits at every distance (checked: a prefetch is only a hint;
the launcher's default as the reference), µs per call from CUDA graphs cycling 4 layers' copies (the weights never sit in L2).
Part 2 (`--model`): the whole random 70B (`qllama.bench.build_model`), batch-1 and batch-16 decode steps at context
128 under each `MMA_PREFETCH` setting of `--settings` (`off;auto;2`: none, the launcher's choice per shape, 2 blocks
everywhere), cycled `--reps` times. (A first version also had the batch-1 kernel ask L2 ahead, `gemv=d`: slower.)

`--swiglu` adds gate/up as decode runs it at 3-16 rows; `--variant SHAPE:key=value,...` (repeatable) adds a shape
with other launch options (e.g. `gate_up:split_k=1`), compared with its own launch at the default distance.

    PYTHONPATH=.:bench python bench/proto/l2_pf.py --out $OUT --shapes --model
    PYTHONPATH=.:bench python bench/proto/l2_pf.py --shapes --ms 16 --branches 4b32,3b32 --pfds 1,2 --only-variants --variant gate_up:split_k=1
"""
import argparse, gc, json, os, statistics, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name

BR = {'main': (4, -1), '4b128': (4, 128), '4b32': (4, 32), '3b-1': (3, -1), '3b128': (3, 128), '3b32': (3, 32)}

def shapes(a, dev, card, bw, out):
    t = lambda fns: graph_time(fns) / len(fns) * 1e3                     # µs a call
    pfds = [0] + [int(d) for d in a.pfds.split(',')]
    for key in a.branches.split(','):
        bits, gs = BR[key]
        name = branch_name(bits, gs)
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
        for M in [int(m) for m in a.ms.split(',')]:
            xs = {K: torch.randn(M, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
            row = []
            cases = [] if a.only_variants else [(s, K, N, s, lambda x, p, kw: gm.gptq_matmul(x, p, x_sorted=True, **kw), {}) for s, (K, N) in JOINED.items()]
            if a.swiglu and M > 2:                                        # gate/up as decode runs it: silu(gate) * up into down's fragments
                xa = gm.xa_target(M, layers[0]['down'], dev)
                cases.append(('gate_up_sxa', *JOINED['gate_up'], 'gate_up',
                              lambda x, p, kw: gm.gptq_matmul(x, p, x_sorted=True, swiglu_out=True, xa=xa, **kw).xa, {}))
            for spec in a.variant:                                          # SHAPE:key=value,...: that shape with other launch options too
                shp, kv = spec.split(':')
                lk = {k: int(v) for k, v in (x.split('=') for x in kv.split(','))}
                cases.append((f'{shp}[{kv}]', *JOINED[shp], shp, lambda x, p, kw, lk=lk: gm.gptq_matmul(x, p, x_sorted=True, **lk, **kw), lk))
            for s, K, N, w, f, lk in cases:
                x, p0 = xs[K], layers[0][w]
                cfg = gm._launch_config(M, N, K, p0, dev, **lk)[0]
                ref = f(x, p0, {}).clone()                                # the launcher's default (a variant's own)
                floor = gm.gptq_matmul_bytes(K, N, bits, gs, M) / bw / 1e3
                us = {}
                for d in pfds:
                    kw = {a.knob: d}
                    same = torch.equal(f(x, p0, kw), ref)
                    us[d] = t([(lambda p=l[w], kw=kw, f=f: f(x, p, kw)) for l in layers])
                    out.append(dict(card=card, branch=name, M=M, shape=s, knob=a.knob, pfd=d, metric='gptq_us', value=us[d], unit='us',
                                    floor_us=floor, fraction_of_floor=floor / us[d], same_bits_as_default=same,
                                    kernel=cfg['KIND'], split=cfg['SPLIT_K'], iters=cfg['ITERS'], warps=cfg['num_warps'], default_pfd=cfg['PFD']))
                    assert same, (name, M, s, d)
                best = min(us, key=us.get)
                row.append(f"{s} {us[0]:.1f}->{us[best]:.1f}@{best} (floor {floor:.1f})")
            print(f"{key:6} M={M:2}: " + '; '.join(row), flush=True)
        del layers; gc.collect(); torch.cuda.empty_cache()

def model(a, dev, card, bw, out):
    from qllama.bench import build_model, bench_decode
    from qllama.fast import use_kernels
    settings = {st: None if st == 'auto' else 0 if st == 'off' else int(st) if st.isdigit() else st for st in a.settings.split(';')}
    for key in a.model_branches.split(','):
        bits, gs = BR[key]
        name = branch_name(bits, gs)
        m = use_kernels(build_model(name, device=dev))
        runs = {st: [] for st in settings}
        for _ in range(a.reps):
            for st, pf in settings.items():
                if a.model_knob == 'pdl':                                  # early launch of q/k/v, o, gate/up: off, the default kinds, or both kernels
                    gm.EARLY_LAUNCH = dict(off=False, auto=None, gemv=('gemv',), mma=('mma',), all=('gemv', 'mma'))[st]
                else: gm.MMA_PREFETCH = pf
                recs, caches = bench_decode(m, card, name, bw, contexts=(128,), batch=16)
                del caches
                r = {x['metric']: x for x in recs}
                runs[st].append((r['decode_b1_ctx128']['step_ms'], r['decode_b16_ctx128_step']['value'], r['graph_equals_eager_same_bucket']['value']))
        gm.MMA_PREFETCH = None; gm.EARLY_LAUNCH = None
        line = []
        for st in settings:
            b1 = statistics.median(x[0] for x in runs[st]); b16 = statistics.median(x[1] for x in runs[st])
            out.append(dict(card=card, branch=name, knob=a.model_knob, prefetch=st, metric='decode_b1_ctx128_step', value=b1, unit='ms', runs=[x[0] for x in runs[st]],
                            graph_equals_eager=all(x[2] for x in runs[st])))
            out.append(dict(card=card, branch=name, knob=a.model_knob, prefetch=st, metric='decode_b16_ctx128_step', value=b16, unit='ms', runs=[x[1] for x in runs[st]]))
            line.append(f"[{st}] {b1:.2f}/{b16:.2f}")
        print(f"{key:6} b1/b16 step ms: {', '.join(line)}", flush=True)
        del m; gc.collect(); torch.cuda.empty_cache()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='main,4b128,3b32')
    ap.add_argument('--pfds', default='1,2,3,4,6')
    ap.add_argument('--knob', default='pfd', help='the launch option swept: pfd (the fragment kernel, blocks ahead; `pfa`, steps the batch-1 kernel asked for up front, was removed after l2_pfa_NVIDIA_H200.json)')
    ap.add_argument('--shapes', action='store_true')
    ap.add_argument('--ms', default='1,16', help='rows of the shape sweep')
    ap.add_argument('--variant', action='append', default=[], help='SHAPE:key=value,...: also that shape with these launch options (e.g. gate_up:split_k=1)')
    ap.add_argument('--only-variants', action='store_true', help='time the --variant cases only')
    ap.add_argument('--swiglu', action='store_true', help='also gate/up as decode runs it at 3-16 rows (silu(gate) * up into down fragments)')
    ap.add_argument('--model', action='store_true')
    ap.add_argument('--model-branches', default='main')
    ap.add_argument('--settings', default='off;auto;2', help="fragment-kernel prefetch: off, auto (the launcher's choice per shape) or a distance")
    ap.add_argument('--model-knob', default='pfd', choices=['pfd', 'pdl'], help="--model's A/B: the fragment kernel's prefetch (`MMA_PREFETCH`) or early launch (`EARLY_LAUNCH`, settings among off, auto, gemv, mma, all; 'pdl_down', down launched early behind gate/up with the batch-1 kernel's trigger after its loads, was removed after pdl_down_model_NVIDIA_H200.json)")
    ap.add_argument('--reps', type=int, default=2)
    ap.add_argument('--tag', default='l2_pf')
    a = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    bw = copy_bandwidth(dev); print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    out = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    try:
        if a.shapes: shapes(a, dev, card, bw, out)
        if a.model: model(a, dev, card, bw, out)
    finally:
        os.makedirs(a.out, exist_ok=True)
        open(os.path.join(a.out, f"{a.tag}_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(out, indent=1))

if __name__ == '__main__': main()
