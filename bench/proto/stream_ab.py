"""Stream-K for the fragment kernel (3-16 rows) against split-K, per joined 70B shape, on the GPU.

`balance_probe.py` showed the split-K launch of q/k/v at 16 rows paying for its last partial wave (80 tiles x 5
splits = 400 programs for 396 slots of 3 per SM: 79 tiles cost 6-10% less per tile), and gate/up's one-split launch
running one program's 64 blocks end to end while 40 SMs hold one program and 92 hold two. Stream-K cuts all tiles'
blocks into exactly P equal ranges. This script times, from CUDA-graph replays over 3 layers (weights never in L2):
`head` (the module of the last commit, split-K: `bench/proto/gm_head.py`), `new` (this module's default launch),
`new split` (this module at head's launch, tiles x split ranges) and `new P=k` (k programs per SM, 4 and 8 warps),
each checked against `head` (relative error < 2e-3).

    PYTHONPATH=.:bench python bench/proto/stream_ab.py --out $OUT [--branches all] [--deadline 300]

Ran once (H200, 2026-11-29, `stream_check.sh`; the kernel is `stream_k_proto.patch`, not in the module): stream-K lost
nearly everywhere. With the partition of split-K (`new split`) the same launch got slower on the long loops (down at
4-bit 128g 50.9 -> 74.4 us, gate/up at 4-bit 32g 100 -> 122 us): the run-time `while` loops over a range's blocks (the
interpreter cannot `range` to a run-time bound) cost more than any balance gains; at 3 programs per SM q/k/v moved
by -1.9 to +1.3 us and o by +0.1 to +2.5 us; gate/up's `split 1` path did not compile (a one-tile range writes y
directly, and with SLOTS=1 the two stores clash). 80 layers at M = 16: head 15.25 / 15.50 / 16.94 / 14.64 ms (main,
4-bit 128g, 4-bit 32g, 3-bit no group), new default 17.44 / 20.81 / 19.92 / 16.72 ms. Cut at the deadline in 3-bit 128g.
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

ALL = '4:-1,4:128,4:32,3:-1,3:128,3:32'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default=ALL)
    ap.add_argument('--m', type=int, default=16)
    ap.add_argument('--per-sm', default='1,2,3,4,6')
    ap.add_argument('--deadline', type=float, default=300)
    a = ap.parse_args()
    import torch
    from qllama import gptq_matmul as gm
    import gm_head
    from gptq_matmul_gpu import random_gptq, JOINED, graph_time, branch_name, relerr
    t0 = time.time(); dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    sms = gm._n_sms(dev); recs = []; totals = {}
    for br in (ALL if a.branches == 'all' else a.branches).split(','):
        bits, gs = map(int, br.split(':'))
        name = branch_name(bits, gs); tot = {}
        for s, (K, N) in JOINED.items():
            if time.time() - t0 > a.deadline: break
            ps = [gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
            x = torch.randn(a.m, K, device=dev, dtype=torch.float16)
            hc = gm_head._launch_config(a.m, N, K, ps[0], dev)[0]
            want = gm_head.gptq_matmul(x, ps[0], x_sorted=True)
            variants = [('head', gm_head, {}), ('new', gm, {}),
                        ('new split', gm, dict(num_warps=hc['num_warps'], fold=hc['FOLD'], split_k=hc['SPLIT_K']))]
            nc = gm._launch_config(a.m, N, K, ps[0], dev)[0]
            for nw in (4, 8):
                for k in map(float, a.per_sm.split(',')):
                    variants.append((f'new P={k:g} nw={nw}', gm, dict(num_warps=nw, fold=nc['FOLD'], programs=int(k * sms))))
            for label, mod, kw in variants:
                try:
                    got = mod.gptq_matmul(x, ps[0], x_sorted=True, **kw)
                    err = relerr(got, want)
                    us = graph_time([(lambda p=p: mod.gptq_matmul(x, p, x_sorted=True, **kw)) for p in ps]) * 1e3 / 3
                except Exception as ex:
                    print(f"{br:>6} {s:<7} {label:<18} {type(ex).__name__}: {str(ex)[:160]}", flush=True); continue
                cfg = mod._launch_config(a.m, N, K, ps[0], dev, **kw)[0]
                progs = cfg.get('PROGRAMS', -(-N // cfg['BLOCK_N']) * cfg['SPLIT_K'])
                r = dict(card=card, branch=name, shape=s, M=a.m, variant=label, launch=kw, programs=progs, num_warps=cfg['num_warps'],
                         fold=cfg['FOLD'], us=us, relerr_to_head=err)
                recs.append(r); tot.setdefault(label, 0.0); tot[label] += us
                print(f"{br:>6} {s:<7} {label:<18} {progs:>4} programs nw {cfg['num_warps']} fold {int(cfg['FOLD'])}: {us:7.2f} us"
                      f"  err {err:.1e}{'  MISMATCH' if err > 2e-3 else ''}", flush=True)
            best = min((r for r in recs if r['branch'] == name and r['shape'] == s and r['relerr_to_head'] < 2e-3), key=lambda r: r['us'])
            tot.setdefault('best', 0.0); tot['best'] += best['us']
            print(f"{br:>6} {s:<7} best: {best['variant']} {best['us']:.2f} us", flush=True)
            del ps; torch.cuda.empty_cache()
        totals[name] = {k: v * 80 / 1e3 for k, v in tot.items()}
        print(f"{br:>6} 80 layers' linears at M={a.m}: " + ', '.join(f"{k} {totals[name][k]:.2f} ms" for k in ('head', 'new', 'new split', 'best') if k in totals[name]), flush=True)
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"stream_ab_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(records=recs, token_linear_ms=totals), indent=1))

if __name__ == '__main__':
    main()
