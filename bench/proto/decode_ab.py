"""A/B of eight decode options on the whole random 70B, in one process (timed on an H200 2026-11-29: all now on by default):

- `attn`: `use_kernels(..., attn_out_sorted=True)`: attention's merge writes its output straight into `o`'s sorted
  order, so at batch 1-2 `o` needs no gather launch of its own (from 3 rows the fragment kernel's copy gathers anyway);
- `chunks`: `norm_kernels.SRC_CHUNKS = 8`: a permuted norm spreads its gathered loads over 8 programs per row;
- `swiglu`: `use_kernels(..., swiglu_in_copy=True)`: from 3 to 16 rows `down`'s copy of its input makes
  silu(gate) * up (no `silu_mul` launch); batch 16 only;
- `resid`: `use_kernels(..., add_in_norm=True)`: each block's last residual add is done by the next norm;
- `xa`: `use_kernels(..., xa_norm=True)`: from 3 to 16 rows the norms write q/k/v's and gate/up's input, and
  decode's attention o's (with `attn` where o is act-order), in the fragment kernel's order (no copy launch); batch 16 only;
- `rope`: `use_kernels(..., rope_in_attention=True)`: decode's attention kernel rotates q and the new key and writes the
  cache itself (no `rope` launch); added 2026-11-29, with `norope` (all but this one) to time it against `all`;
- `merge`: `attention_kernels.MERGE_MAX = 4`: with at most 4 chunks per (row, KV head) the decode attention kernel's
  last program merges them (no merge launch); 0: the merge kernel always. `nomerge`: all but this one;
- `tail`: `use_kernels(..., swiglu_in_tail=True)`: at 1-2 rows gate/up's split-K tail makes silu(gate) * up (no
  `silu_mul` launch); batch 1 only; added 2026-11-29 (third session), with `notail`;
- `sxa`: `use_kernels(..., swiglu_xa=True)`: at 3-16 rows gate/up's fragment kernel writes silu(gate) * up straight
  into down's fragment order (no copy launch before down; over `swiglu`'s path); batch 16 only; added 2026-11-29
  (fourth session), with `nosxa`.

Per branch the same model is decoded from CUDA graphs under `base`, `attn`, `chunks`, `swiglu`, `resid`, `xa`, `rope`, `merge`, `tail`, `sxa`, `norope`, `nomerge`, `notail`, `nosxa`, `all`
(or the `--variants` given), that cycle repeated `--reps` times (only `Attention._o_inv`, `MLP._swiglu_copy`, `MLP._swiglu_tail`, `MLP._swiglu_xa`, `Block._add_later`,
`Block._xa_norm`, `Attention._rope_attn` and the two module constants change; each
measurement captures new graphs), batch 1 at context 128 and batch 16; one eager decode step of 4 rows and one of 1 row under each
gives the same logits bit for bit (checked; on the GPU not with `rope`, whose rotation may round a cached key the
other way: each record keeps its largest difference to `base`, `max_abs_logit_diff_base`). Without groups (`main`, 3-bit no group) `attn` and `chunks` change
nothing.

    PYTHONPATH=. python bench/proto/decode_ab.py --out $OUT [--branches gptq-4bit-128g-actorder_True,...] [--variants norope,all --tag decode_ab_rope]
    TRITON_INTERPRET=1 PYTHONPATH=. python bench/proto/decode_ab.py --smoke    # CPU: a tiny model, the logits check only
"""
import argparse, gc, json, os, statistics
import torch
from qllama import norm_kernels, attention_kernels
from qllama.bench import build_model, copy_bandwidth, bench_decode
from qllama.fast import use_kernels
from qllama.generate import decode_step
from qllama.model import KVCache

VARIANTS = ('base', 'attn', 'chunks', 'swiglu', 'resid', 'xa', 'rope', 'merge', 'tail', 'sxa', 'norope', 'nomerge', 'notail', 'nosxa', 'all')
BRANCHES = 'main,gptq-4bit-128g-actorder_True,gptq-4bit-32g-actorder_True,gptq-3bit-128g-actorder_True,gptq-3bit-32g-actorder_True'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default=BRANCHES)
    ap.add_argument('--reps', type=int, default=2, help='cycles through the variants per branch')
    ap.add_argument('--variants', default=','.join(VARIANTS), help='which variants, comma-separated')
    ap.add_argument('--tag', default='decode_ab', help='the JSON is TAG_<card>.json')
    ap.add_argument('--smoke', action='store_true', help='on the CPU: a tiny model, logits compared, nothing timed')
    args = ap.parse_args()
    variants = args.variants.split(',')
    assert set(variants) <= set(VARIANTS), variants
    dev = torch.device('cpu' if args.smoke else 'cuda')
    card = 'CPU smoke' if args.smoke else torch.cuda.get_device_name(dev)
    bw = 1.0 if args.smoke else copy_bandwidth(dev)
    out = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    tiny = None
    if args.smoke:
        from qllama.config import LlamaConfig
        from qllama.load import tiny_config
        tiny = LlamaConfig.from_dict(tiny_config(vocab_size=128, hidden_size=256, intermediate_size=512))
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for b in args.branches.split(','):
        m = use_kernels(build_model(b, tiny, device=dev))
        layers = m.model.layers
        perms = [l.self_attn.o_proj.packed.perm for l in layers]
        inv = [None if P is None else torch.argsort(P.long()).int() for P in perms]
        def mode(v):
            on = lambda o: v in (o, 'all') or (v.startswith('no') and o != v[2:])   # `noX`: all but X
            for l, i in zip(layers, inv):
                l.self_attn._o_inv = i if on('attn') else None
                l.mlp._swiglu_copy = on('swiglu') and l.mlp._gate_up is not None
                l.mlp._swiglu_tail = on('tail') and l.mlp._gate_up is not None
                l.mlp._swiglu_xa = on('sxa') and l.mlp._gate_up is not None
                l._add_later = on('resid')
                l._xa_norm = l.self_attn._xa_out = on('xa')
                l.self_attn._rope_attn = on('rope')
            norm_kernels.SRC_CHUNKS = 8 if on('chunks') else 1
            attention_kernels.MERGE_MAX = 4 if on('merge') else 0
        cfg = m.config.llama
        c = KVCache(cfg, 4, 128, torch.float16, dev)                    # 4 rows: the fragment kernel, so swiglu is used
        tok, slot = torch.tensor([17, 3, 99, 5], device=dev), torch.arange(4, device=dev)
        pos = torch.tensor([127, 100, 64, 7], device=dev)
        with torch.inference_mode():
            c.k.normal_(); c.v.normal_()
            logits = {}
            for v in VARIANTS:                                          # every variant, whichever are timed; 4 rows, then 1 (the batch-1 kernel)
                mode(v); logits[v] = torch.cat([decode_step(m, tok, c, pos, slot, 128).flatten(), decode_step(m, tok[:1], c, pos[:1], slot[:1], 128).flatten()])
        same = all(torch.equal(logits[v], logits['base']) for v in VARIANTS)
        diff = {v: (logits[v].float() - logits['base'].float()).abs().max().item() for v in VARIANTS}
        del c
        runs = {v: [] for v in variants}
        if args.smoke:
            print(f"{b}: logits equal under every variant: {same}"); assert same; continue
        for _ in range(args.reps):
            for on_ in variants:
                mode(on_)
                recs, caches = bench_decode(m, card, b, bw, contexts=(128,), batch=16)
                del caches
                r = {x['metric']: x for x in recs}
                runs[on_].append((r['decode_b1_ctx128']['step_ms'], r['decode_b16_ctx128_step']['value'],
                                  r['graph_equals_eager_same_bucket']['value']))
        line = []
        for v in variants:
            b1 = statistics.median(x[0] for x in runs[v]); b16 = statistics.median(x[1] for x in runs[v])
            out.append(dict(card=card, branch=b, variant=v, metric='decode_b1_ctx128_step', value=b1, unit='ms',
                            runs=[x[0] for x in runs[v]], logits_equal_base=same, max_abs_logit_diff_base=diff[v], graph_equals_eager=all(x[2] for x in runs[v])))
            out.append(dict(card=card, branch=b, variant=v, metric='decode_b16_ctx128_step', value=b16, unit='ms', runs=[x[1] for x in runs[v]]))
            line.append(f"{v} {b1:.2f}/{b16:.2f}")
        print(f"{b:<30} b1/b16 step ms: {', '.join(line)}; logits equal {same} (max diff {max(diff.values()):.3g})", flush=True)
        del m, layers; gc.collect(); torch.cuda.empty_cache()
    if args.smoke: return
    os.makedirs(args.out, exist_ok=True)
    open(os.path.join(args.out, f"{args.tag}_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(out, indent=1))

if __name__ == '__main__': main()
