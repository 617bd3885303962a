"""A/B of `use_kernels(..., attn_out_sorted=True)` on the whole random 70B, in one process.

With the option, attention's merge writes its output straight into `o`'s sorted (act-order) order, so at batch 1-2
`o` needs no gather launch of its own (from 3 rows the fragment kernel's copy of `x` gathers anyway). Per grouped
branch (without groups `o` has no permutation and nothing changes) the same model is decoded from CUDA graphs with
the option off, on, off, on (only `Attention._o_inv` changes between them), batch 1 at context 128 and batch 16;
one eager decode step with each gives the same logits bit for bit (checked).

    PYTHONPATH=. python bench/proto/attn_sorted_ab.py --out $OUT [--branches gptq-4bit-128g-actorder_True,...]
"""
import argparse, gc, json, os, statistics
import torch
from qllama.bench import build_model, copy_bandwidth, bench_decode
from qllama.fast import use_kernels
from qllama.generate import decode_step
from qllama.model import KVCache

GROUPED = 'gptq-4bit-128g-actorder_True,gptq-4bit-32g-actorder_True,gptq-3bit-128g-actorder_True,gptq-3bit-32g-actorder_True'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default=GROUPED)
    ap.add_argument('--reps', type=int, default=2, help='off/on alternations per branch')
    args = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    bw = copy_bandwidth(dev); out = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for b in args.branches.split(','):
        m = use_kernels(build_model(b))
        layers = m.model.layers
        inv = [torch.argsort(l.self_attn.o_proj.packed.perm.long()).int() for l in layers]
        def mode(on):
            for l, i in zip(layers, inv): l.self_attn._o_inv = i if on else None
        cfg = m.config.llama
        c = KVCache(cfg, 1, 128, torch.float16, dev)
        tok, pos, slot = torch.tensor([17], device=dev), torch.tensor([127], device=dev), torch.tensor([0], device=dev)
        with torch.inference_mode():
            c.k.normal_(); c.v.normal_()
            mode(False); off = decode_step(m, tok, c, pos, slot, 128).clone()
            mode(True); on = decode_step(m, tok, c, pos, slot, 128).clone()
        same = torch.equal(off, on)
        del c
        runs = {False: [], True: []}
        for _ in range(args.reps):
            for on_ in (False, True):
                mode(on_)
                recs, caches = bench_decode(m, card, b, bw, contexts=(128,), batch=16)
                del caches
                r = {x['metric']: x for x in recs}
                runs[on_].append((r['decode_b1_ctx128']['step_ms'], r['decode_b16_ctx128_step']['value'],
                                  r['graph_equals_eager_same_bucket']['value']))
        for on_ in (False, True):
            b1 = statistics.median(x[0] for x in runs[on_]); b16 = statistics.median(x[1] for x in runs[on_])
            out.append(dict(card=card, branch=b, attn_out_sorted=on_, metric='decode_b1_ctx128_step', value=b1, unit='ms',
                            runs=[x[0] for x in runs[on_]], logits_equal_off_on=same, graph_equals_eager=all(x[2] for x in runs[on_])))
            out.append(dict(card=card, branch=b, attn_out_sorted=on_, metric='decode_b16_ctx128_step', value=b16, unit='ms',
                            runs=[x[1] for x in runs[on_]]))
        print(f"{b:<30} b1 step off {out[-4]['value']:.2f} on {out[-2]['value']:.2f} ms; b16 off {out[-3]['value']:.2f} "
              f"on {out[-1]['value']:.2f} ms; logits equal {same}", flush=True)
        del m, layers; gc.collect(); torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    open(os.path.join(args.out, f"attn_sorted_ab_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(out, indent=1))

if __name__ == '__main__': main()
