"""A/B of two act-order decode options on the whole random 70B, in one process, both off by default until timed:

- `attn`: `use_kernels(..., attn_out_sorted=True)`: attention's merge writes its output straight into `o`'s sorted
  order, so at batch 1-2 `o` needs no gather launch of its own (from 3 rows the fragment kernel's copy gathers anyway);
- `chunks`: `norm_kernels.SRC_CHUNKS = 8`: a permuted norm spreads its gathered loads over 8 programs per row.

Per grouped branch (without groups nothing is permuted and nothing changes) the same model is decoded from CUDA
graphs under `base`, `attn`, `chunks`, `both`, that cycle repeated `--reps` times (only `Attention._o_inv` and the
module constant change; each measurement captures new graphs), batch 1 at context 128 and batch 16; one eager
decode step under each gives the same logits bit for bit (checked).

    PYTHONPATH=. python bench/proto/decode_ab.py --out $OUT [--branches gptq-4bit-128g-actorder_True,...]
"""
import argparse, gc, json, os, statistics
import torch
from qllama import norm_kernels
from qllama.bench import build_model, copy_bandwidth, bench_decode
from qllama.fast import use_kernels
from qllama.generate import decode_step
from qllama.model import KVCache

VARIANTS = ('base', 'attn', 'chunks', 'both')
GROUPED = 'gptq-4bit-128g-actorder_True,gptq-4bit-32g-actorder_True,gptq-3bit-128g-actorder_True,gptq-3bit-32g-actorder_True'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default=GROUPED)
    ap.add_argument('--reps', type=int, default=2, help='cycles through the variants per branch')
    args = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    bw = copy_bandwidth(dev); out = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for b in args.branches.split(','):
        m = use_kernels(build_model(b))
        layers = m.model.layers
        inv = [torch.argsort(l.self_attn.o_proj.packed.perm.long()).int() for l in layers]
        def mode(v):
            for l, i in zip(layers, inv): l.self_attn._o_inv = i if v in ('attn', 'both') else None
            norm_kernels.SRC_CHUNKS = 8 if v in ('chunks', 'both') else 1
        cfg = m.config.llama
        c = KVCache(cfg, 1, 128, torch.float16, dev)
        tok, pos, slot = torch.tensor([17], device=dev), torch.tensor([127], device=dev), torch.tensor([0], device=dev)
        with torch.inference_mode():
            c.k.normal_(); c.v.normal_()
            logits = {}
            for v in VARIANTS: mode(v); logits[v] = decode_step(m, tok, c, pos, slot, 128).clone()
        same = all(torch.equal(logits[v], logits['base']) for v in VARIANTS)
        del c
        runs = {v: [] for v in VARIANTS}
        for _ in range(args.reps):
            for on_ in VARIANTS:
                mode(on_)
                recs, caches = bench_decode(m, card, b, bw, contexts=(128,), batch=16)
                del caches
                r = {x['metric']: x for x in recs}
                runs[on_].append((r['decode_b1_ctx128']['step_ms'], r['decode_b16_ctx128_step']['value'],
                                  r['graph_equals_eager_same_bucket']['value']))
        line = []
        for v in VARIANTS:
            b1 = statistics.median(x[0] for x in runs[v]); b16 = statistics.median(x[1] for x in runs[v])
            out.append(dict(card=card, branch=b, variant=v, metric='decode_b1_ctx128_step', value=b1, unit='ms',
                            runs=[x[0] for x in runs[v]], logits_equal_base=same, graph_equals_eager=all(x[2] for x in runs[v])))
            out.append(dict(card=card, branch=b, variant=v, metric='decode_b16_ctx128_step', value=b16, unit='ms', runs=[x[1] for x in runs[v]]))
            line.append(f"{v} {b1:.2f}/{b16:.2f}")
        print(f"{b:<30} b1/b16 step ms: {', '.join(line)}; logits equal {same}", flush=True)
        del m, layers; gc.collect(); torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    open(os.path.join(args.out, f"decode_ab_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(out, indent=1))

if __name__ == '__main__': main()
