"""Where a decode step's time goes: CUDA kernel time per kind, from torch.profiler over CUDA-graph replays.

For a 70B-shaped random GPTQ model (`qllama.bench.build_model`, kernels on), batch 1 and batch 16 at context 128:
the step time (median of replays), then 10 replays under `torch.profiler` (CUPTI sees the kernels inside the
graph). Kernel time is summed by kind (the GPTQ decode kernels, attention, norms, RoPE, SiLU·mul, lm_head
cuBLAS, the rest); what is left of the step is time with no kernel running (launch gaps and kernel ramp-up
inside the graph). Also the graph's replay alone (no input copies), a profiled replay's span (the 10 replays' first
kernel start to last end, over 10) and the time some kernel runs in one (kernels launched early overlap the one before). Also per call: each kind's mean kernel time, the mean gap before it, and the GPTQ launches by shape
(q/k/v, o, gate/up, down, from their order in a layer). JSON records go to `--out` (default bench/results), a table is printed.

    PYTHONPATH=. python bench/profile_decode_gpu.py [--branches main gptq-3bit-128g-actorder_True] [--tag profile_decode]
"""
import argparse, json, os, re, collections
import torch
from torch.profiler import profile, ProfilerActivity
from qllama.bench import build_model, median_ms, copy_bandwidth, token_bytes
from qllama.fast import use_kernels
from qllama.model import KVCache
from qllama.graph import GraphDecoder

KINDS = [('gptq gemv (M<=2)', r'_gemv_kernel'), ('gptq mma (3<=M<=16)', r'_mma_kernel'), ('x -> A fragments', r'_xa_kernel'), ('attention', r'attention|attn|_decode'),
         ('norm', r'norm'), ('rope', r'rope'), ('silu*mul', r'silu'), ('lm_head / cuBLAS', r'gemv|gemm|cutlass|sm90_|ampere|Kernel2'),
         ('index/gather', r'index|gather'), ('other', r'.')]

def kind(name):
    for k, pat in KINDS:
        if re.search(pat, name, re.I): return k

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--branches', nargs='+', default=['main', 'gptq-3bit-128g-actorder_True'])
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--tag', default='profile_decode', help='file name: TAG_CARD.json'); a = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    bw = copy_bandwidth(); print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for branch in a.branches:
        m = use_kernels(build_model(branch)); cfg = m.config.llama
        for B in (1, 16):
            ctx = 128
            cache = KVCache(cfg, B, 512, torch.float16, dev)
            with torch.inference_mode():
                cache.k.normal_(); cache.v.normal_()
                dec = GraphDecoder(m, cache)
                toks, slots = torch.randint(0, cfg.vocab_size, (B,), device=dev), torch.arange(B, device=dev)
                pos = ctx - 1 - torch.arange(B, device=dev) % 8
                step = lambda: dec(toks, pos, slots, ctx)
                ms = median_ms(step, 30, 3)
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(10): step()
                    torch.cuda.synchronize()
            per = collections.defaultdict(float); names = collections.defaultdict(float); n = 0
            evs = sorted((ev for ev in prof.events() if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time > 0
                          and 'Memcpy' not in ev.name and 'Memset' not in ev.name), key=lambda ev: ev.time_range.start)
            for ev in evs:
                per[kind(ev.name)] += ev.device_time / 10 / 1e3; names[ev.name[:60]] += ev.device_time / 10 / 1e3; n += 1
            # the GPTQ launches of a step come in layer order q/k/v, o, gate/up, down; and the gap before each launch, by kind
            shapes, gaps = collections.defaultdict(list), collections.defaultdict(list)
            gq = [ev for ev in evs if re.search(r'_gemv_kernel|_mma_kernel', ev.name)]
            for i, ev in enumerate(gq): shapes[('qkv', 'o', 'gate_up', 'down')[i % 4]].append(ev.device_time)
            for a_, b_ in zip(evs, evs[1:]):
                g = b_.time_range.start - a_.time_range.end
                if g < 50: gaps[kind(b_.name)].append(g)                       # (not the gap between two replays)
            busy = sum(per.values())
            union, end = 0.0, None                                         # time some kernel runs (early launches overlap)
            for ev in evs:
                st, en = ev.time_range.start, ev.time_range.end
                if end is None or st >= end: union += en - st; end = en
                elif en > end: union += en - end; end = en
            span = (max(ev.time_range.end for ev in evs) - evs[0].time_range.start) / 10   # a replay's share of the 10, back to back
            g = dec.graphs[min(dec.graphs)][0]
            replay = median_ms(g.replay, 30, 3)                              # the graph alone, no input copies
            floor = token_bytes(cfg, m.config.quant, B) / bw / 1e6
            r = dict(card=card, branch=branch, batch=B, context=ctx, step_ms=ms, kernel_ms=dict(per), busy_ms=busy, idle_ms=ms - busy,
                     floor_ms=floor, kernels_per_step=n / 10, replay_ms=replay, graph_span_ms=span / 1e3,
                     busy_union_ms=union / 10 / 1e3, top_kernels=dict(sorted(names.items(), key=lambda kv: -kv[1])[:12]),
                     gptq_us_per_call={k: sum(v) / len(v) for k, v in shapes.items()},
                     gap_us_before={k: dict(mean=sum(v) / len(v), per_step_ms=sum(v) / 10 / 1e3) for k, v in gaps.items()},
                     kernel_us_per_call={k: v * 1e3 / (sum(1 for ev in evs if kind(ev.name) == k) / 10) for k, v in per.items()})
            recs.append(r)
            print(f"\n{branch} batch {B} ctx {ctx}: step {ms:.2f} ms (floor {floor:.2f}), kernels {busy:.2f} ms busy, "
                  f"{ms - busy:.2f} ms with no kernel running, {n / 10:.0f} kernels per step")
            print(f"  replay alone {replay:.2f} ms; a profiled replay spans {r['graph_span_ms']:.2f} ms, kernels running "
                  f"{r['busy_union_ms']:.2f} ms of it (early launches overlap: their time includes the wait)")
            for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
                print(f"  {k:<22} {v:7.3f} ms  {v / ms:5.1%}  {r['kernel_us_per_call'][k]:6.2f} us a call,"
                      f" gap before {r['gap_us_before'].get(k, {}).get('mean', 0):5.2f} us")
            print('  GPTQ us a call: ' + ', '.join(f"{k} {v:.2f}" for k, v in r['gptq_us_per_call'].items()))
            del dec, cache; torch.cuda.empty_cache()
        del m; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"{a.tag}_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
