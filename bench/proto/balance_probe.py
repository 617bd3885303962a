"""Does the last partial wave cost what it seems? Time per column tile of the GPTQ kernels against the number of tiles.

Nsight Compute saw the fragment kernel's SMs busy 71-76% of their elapsed cycles at 16 rows (q/k/v and o), with a
25% spread of active cycles between SMs (`ncu_mma_balance_<card>.txt`). If the spread is the programs that do not fit
evenly on the SMs (q/k/v at 4-bit 128g: 80 tiles x 5 splits = 400 programs on 132 SMs x 3), the time of a launch
jumps where programs cross a multiple of the SMs, and a launch of 79 tiles (395 programs) is ~20% cheaper per tile
than one of 80. This script keeps each shape's default launch (warps, split-K, folding) and times it at the full
width and at 1..6 tiles fewer, from CUDA-graph replays over 3 layers (weights never in L2), M = 16 and M = 1.

    PYTHONPATH=.:bench python bench/proto/balance_probe.py --out $OUT [--branches 4:128,4:-1,3:128] [--deadline 300]
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='4:128,4:-1,3:128')
    ap.add_argument('--ms', default='16,1')
    ap.add_argument('--fewer', default='0,1,2,3,4,6')
    ap.add_argument('--deadline', type=float, default=300)
    a = ap.parse_args()
    import torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import random_gptq, JOINED, graph_time, branch_name
    t0 = time.time(); dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    sms = gm._n_sms(dev); recs = []
    for br in a.branches.split(','):
        bits, gs = map(int, br.split(':'))
        for M in map(int, a.ms.split(',')):
            for s, (K, N) in JOINED.items():
                if time.time() - t0 > a.deadline: break
                # the default launch of the full shape, held fixed as N shrinks
                full = [gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
                cfg = gm._launch_config(M, N, K, full[0], dev)[0]
                kw = dict(num_warps=cfg['num_warps'], split_k=cfg['SPLIT_K'])
                if cfg['KIND'] == 'mma': kw['fold'] = cfg['FOLD']
                else: kw.update(block_n=cfg['BLOCK_N'], U=cfg['U'], even=cfg['EVEN'])
                bn = cfg['BLOCK_N']; x = torch.randn(M, K, device=dev, dtype=torch.float16)
                base = None
                for f in map(int, a.fewer.split(',')):
                    n = N - f * bn
                    ps = full if f == 0 else [gm.prepare(*random_gptq(K, n, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
                    if f:                                              # same launch as the full width (the launcher may pick else)
                        c2 = gm._launch_config(M, n, K, ps[0], dev, **kw)[0]
                        if c2['SPLIT_K'] != cfg['SPLIT_K'] or c2['ITERS'] != cfg['ITERS']: continue
                    us = graph_time([(lambda p=p: gm.gptq_matmul(x, p, x_sorted=True, **kw)) for p in ps]) * 1e3 / 3
                    tiles_n = n // bn
                    per = us / tiles_n
                    base = base or per
                    r = dict(card=card, branch=branch_name(bits, gs), shape=s, M=M, tiles=tiles_n, split_k=cfg['SPLIT_K'],
                             programs=tiles_n * cfg['SPLIT_K'] * (1 if cfg['KIND'] == 'mma' else M), sms=sms,
                             launch=kw, us=us, us_per_tile=per, per_tile_vs_full=per / base)
                    recs.append(r)
                    print(f"{br:>6} M={M:<2} {s:<7} tiles {tiles_n:>3} x split {cfg['SPLIT_K']:>2} = {r['programs']:>4} programs"
                          f" ({r['programs'] / sms:.2f}/SM): {us:7.2f} us, per tile {per / base:.3f} of full", flush=True)
                del full; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"balance_probe_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(records=recs), indent=1))

if __name__ == '__main__':
    main()
