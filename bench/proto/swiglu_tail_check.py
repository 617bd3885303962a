"""silu(gate) * up made by gate/up's split-K tail at batch 1 (`gptq_matmul(..., swiglu_out=True)`) against gate/up then
`silu_mul`, at the 70B's joined gate/up (8192 -> 2 x 28672), six branches, M = 1 and 2: the same bits (checked), and
the time of the two launches against the one, from CUDA-graph replays over 3 layers (weights never in L2).

    PYTHONPATH=.:bench python bench/proto/swiglu_tail_check.py --out $OUT
"""
import argparse, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    a = ap.parse_args()
    import torch
    from qllama import gptq_matmul as gm
    from qllama.norm_kernels import silu_mul
    from gptq_matmul_gpu import random_gptq, JOINED, graph_time, branch_name
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    K, N = JOINED['gate_up']
    for bits, gs in [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)]:
        ps = [gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for _ in range(3)]
        for M in (1, 2):
            x = torch.randn(M, K, device=dev, dtype=torch.float16)
            same = torch.equal(gm.gptq_matmul(x, ps[0], x_sorted=True, swiglu_out=True), silu_mul(gm.gptq_matmul(x, ps[0], x_sorted=True)))
            two = graph_time([(lambda p=p: silu_mul(gm.gptq_matmul(x, p, x_sorted=True))) for p in ps]) * 1e3 / 3
            one = graph_time([(lambda p=p: gm.gptq_matmul(x, p, x_sorted=True, swiglu_out=True)) for p in ps]) * 1e3 / 3
            alone = graph_time([(lambda p=p: gm.gptq_matmul(x, p, x_sorted=True)) for p in ps]) * 1e3 / 3
            recs.append(dict(card=card, branch=branch_name(bits, gs), shape='gate_up', M=M, same_bits=same, us_gate_up_then_silu_mul=two,
                             us_swiglu_in_tail=one, us_gate_up_alone=alone, saved_us=two - one))
            print(f"{bits}:{gs:>4} M={M}: gate/up + silu_mul {two:6.2f} us, in the tail {one:6.2f} us (gate/up alone {alone:6.2f});"
                  f" saved {two - one:5.2f} us; same bits {same}", flush=True)
        del ps; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"swiglu_tail_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(records=recs), indent=1))

if __name__ == '__main__':
    main()
