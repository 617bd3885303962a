"""silu(gate) * up written by gate/up's fragment kernel straight into down's fragment order (`gptq_matmul(x, gate_up,
swiglu_out=True, xa=xa_target(M, down))`) against gate/up, then down's copy of its input making silu(gate) * up
(`gptq_matmul(gu, down, swiglu=True)`), at the 70B's joined gate/up (8192 -> 2 x 28672) and down (28672 -> 8192), six
branches, M = 3, 8, 16: down's output the same bits (checked), and the time of the MLP's launches both ways from
CUDA-graph replays over 3 layers (weights never in L2).

    PYTHONPATH=.:bench python bench/proto/swiglu_xa_check.py --out $OUT
"""
import argparse, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--parts', action='store_true', help='also each launch alone: gate/up plain, with swiglu_out, into xa; down from each')
    ap.add_argument('--branches', default='4:-1,4:128,4:32,3:-1,3:128,3:32')
    a = ap.parse_args()
    import torch
    from qllama import gptq_matmul as gm
    from gptq_matmul_gpu import random_gptq, JOINED, graph_time, branch_name
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    (K, N), (Kd, Nd) = JOINED['gate_up'], JOINED['down']
    for bits, gs in [tuple(map(int, b.split(':'))) for b in a.branches.split(',')]:
        gus = [gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
        ds = [gm.prepare(*random_gptq(Kd, Nd, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
        for M in [int(m) for m in os.environ.get("MS", "3,8,16").split(",")]:
            x = torch.randn(M, K, device=dev, dtype=torch.float16) * 0.05
            old = lambda g, d: gm.gptq_matmul(gm.gptq_matmul(x, g, x_sorted=True), d, x_sorted=True, swiglu=True)
            new = lambda g, d: gm.gptq_matmul(gm.gptq_matmul(x, g, x_sorted=True, swiglu_out=True, xa=gm.xa_target(M, d, dev)), d, x_sorted=True)
            same = torch.equal(old(gus[0], ds[0]), new(gus[0], ds[0]))
            t_old = graph_time([(lambda g=g, d=d: old(g, d)) for g, d in zip(gus, ds)]) * 1e3 / 3
            t_new = graph_time([(lambda g=g, d=d: new(g, d)) for g, d in zip(gus, ds)]) * 1e3 / 3
            if a.parts:
                xt = gm.xa_target(M, ds[0], dev)
                parts = dict(gate_up=[(lambda g=g: gm.gptq_matmul(x, g, x_sorted=True)) for g in gus],
                             gate_up_swiglu_y=[(lambda g=g: gm.gptq_matmul(x, g, x_sorted=True, swiglu_out=True)) for g in gus],
                             gate_up_swiglu_xa=[(lambda g=g: gm.gptq_matmul(x, g, x_sorted=True, swiglu_out=True, xa=xt)) for g in gus])
                gu0 = gm.gptq_matmul(x, gus[0], x_sorted=True); fx = gm.gptq_matmul(x, gus[0], x_sorted=True, swiglu_out=True, xa=xt)
                parts.update(down_copy_swiglu=[(lambda d=d: gm.gptq_matmul(gu0, d, x_sorted=True, swiglu=True)) for d in ds],
                             down_from_xa=[(lambda d=d: gm.gptq_matmul(fx, d, x_sorted=True)) for d in ds])
                pt = {k: graph_time(v) * 1e3 / 3 for k, v in parts.items()}
                recs.append(dict(card=card, branch=branch_name(bits, gs), M=M, parts_us=pt))
                print('   ' + ', '.join(f"{k} {v:.2f}" for k, v in pt.items()), flush=True)
            recs.append(dict(card=card, branch=branch_name(bits, gs), shape='gate_up + down', M=M, same_bits=same,
                             us_copy_makes_swiglu=t_old, us_gate_up_writes_down_fragments=t_new, saved_us=t_old - t_new))
            print(f"{bits}:{gs:>4} M={M:<2}: gate/up, copy + down {t_old:6.2f} us; gate/up into down's fragments + down {t_new:6.2f} us;"
                  f" saved {t_old - t_new:5.2f} us; same bits {same}", flush=True)
        del gus, ds; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"swiglu_xa_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(records=recs), indent=1))

if __name__ == '__main__':
    main()
