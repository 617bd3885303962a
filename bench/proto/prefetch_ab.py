"""Asking L2 for the next linear's first bytes (`gptq_matmul(..., prefetch=next)`, `gptq_matmul.PREFETCH`), on the GPU.

(1) Kernels: a dependent chain through 4 random 70B layers (gate/up -> down -> o -> q/k/v -> the next layer's gate/up,
each input normalized by a few small torch launches, as a norm or attention sits between the real ones) in one CUDA
graph, M = 1 and 16: per layer µs with no prefetch and with each (mode, bytes) setting; the output bit for bit the same.
(2) The whole random 70B (`use_kernels(..., prefetch_next=)`): batch-1 and batch-16 decode steps at context 128 under
the same settings, cycled `--reps` times; eager logits of 4 rows and of 1 row the same bit for bit with and without.

Settings: 'off', or 'MODE:MB' (MODE 1 `prefetch.global.L2` per 128-byte line, 2 the same with `evict_last`, 3 Hopper's
`cp.async.bulk.prefetch.L2` per 4 KB; MB of the next launch's first bytes). Measured on an H200 2026-11-29: slower at every
setting (`prefetch_ab_NVIDIA_H200.json`, `prefetch_model_NVIDIA_H200.json`), so not adopted; the module changes it needs
are kept as a patch against commit c1220a8:

    git apply bench/proto/prefetch_proto.patch && nbdev_export
    PYTHONPATH=.:bench python bench/proto/prefetch_ab.py --out $OUT [--branches ...] [--settings off,1:8,3:16] [--reps 2]
"""
import argparse, gc, json, os, statistics, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch

def setting(s):
    "'off' or 'MODE:MB' -> (mode, bytes)"
    if s == 'off': return 0, 0
    mode, mb = s.split(':'); return int(mode), int(float(mb) * (1 << 20))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True')
    ap.add_argument('--settings', default='off,1:4,1:8,1:16,2:8,3:8,3:16')
    ap.add_argument('--model-settings', default='off,1:8,1:16,3:16')
    ap.add_argument('--reps', type=int, default=2)
    ap.add_argument('--no-chain', action='store_true'); ap.add_argument('--no-model', action='store_true')
    ap.add_argument('--tag', default='prefetch_ab')
    a = ap.parse_args()
    from qllama import gptq_matmul as gm
    from qllama.bench import build_model, copy_bandwidth, bench_decode
    from qllama.fast import use_kernels, _link_next
    from qllama.generate import decode_step
    from qllama.model import KVCache
    from gptq_matmul_gpu import random_gptq, JOINED, branch_name
    from triton.testing import do_bench
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    bw = copy_bandwidth(dev); recs = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')]
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    spec = {'main': (4, -1), 'gptq-4bit-128g-actorder_True': (4, 128), 'gptq-4bit-32g-actorder_True': (4, 32),
            'gptq-3bit--1g-actorder_True': (3, -1), 'gptq-3bit-128g-actorder_True': (3, 128), 'gptq-3bit-32g-actorder_True': (3, 32)}
    def use(s):
        gm.PREFETCH['mode'], gm.PREFETCH['bytes'] = setting(s)
    for b in a.branches.split(','):
        if not a.no_chain:
            bits, gs = spec[b]
            layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
            order = [(i, s) for i in range(4) for s in ('gate_up', 'down', 'o', 'qkv')]
            nxt = {order[j]: layers[order[j + 1][0]][order[j + 1][1]] for j in range(len(order) - 1)}
            nxt[order[-1]] = layers[0]['gate_up']
            for M in (1, 16):
                x0 = torch.randn(M, 8192, device=dev, dtype=torch.float16)
                def chain(pf):
                    nz = lambda t: (t.float() / t.float().norm() * 30).half()
                    h = x0
                    for i, lay in enumerate(layers):
                        k = lambda s: dict(prefetch=nxt[(i, s)]) if pf else {}
                        g = gm.gptq_matmul(h, lay['gate_up'], x_sorted=True, **k('gate_up'))
                        d = gm.gptq_matmul(nz(g[:, :28672]), lay['down'], x_sorted=True, **k('down'))
                        o = gm.gptq_matmul(nz(d), lay['o'], x_sorted=True, **k('o'))
                        q = gm.gptq_matmul(nz(o), lay['qkv'], x_sorted=True, **k('qkv'))
                        h = nz(q[:, :8192])
                    return h
                use('off'); ref = chain(False)
                for s in a.settings.split(','):
                    use(s)
                    eager = chain(s != 'off'); torch.cuda.synchronize()
                    gr = torch.cuda.CUDAGraph(); st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(st):
                        chain(s != 'off'); torch.cuda.synchronize()
                        with torch.cuda.graph(gr): hg = chain(s != 'off')
                    gr.replay(); torch.cuda.synchronize()
                    same = torch.equal(hg, ref) and torch.equal(eager, ref)
                    us = [do_bench(gr.replay, warmup=30, rep=200, return_mode='median') * 1e3 / 4 for _ in range(3)]
                    r = dict(card=card, branch=b, shape='chain of 4 layers', M=M, setting=s, us_per_layer=statistics.median(us), runs=us, same_bits_as_off=same)
                    recs.append(r); print(f"{b[:16]:<16} M={M:<2} chain {s:<5} {r['us_per_layer']:7.1f} us/layer  same bits {same}", flush=True)
                    del gr
            del layers; gc.collect(); torch.cuda.empty_cache()
        if a.no_model: continue
        m = use_kernels(build_model(b, device=dev))
        layers = m.model.layers
        cfg = m.config.llama
        c = KVCache(cfg, 4, 128, torch.float16, dev)
        tok, slot, pos = torch.tensor([17, 3, 99, 5], device=dev), torch.arange(4, device=dev), torch.tensor([127, 100, 64, 7], device=dev)
        ms = a.model_settings.split(',')
        with torch.inference_mode():
            c.k.normal_(); c.v.normal_()
            logits = {}
            for s in ms:
                use(s); _link_next(layers, s != 'off')
                logits[s] = torch.cat([decode_step(m, tok, c, pos, slot, 128).flatten(), decode_step(m, tok[:1], c, pos[:1], slot[:1], 128).flatten()])
        same = all(torch.equal(logits[s], logits['off']) for s in ms)
        del c
        runs = {s: [] for s in ms}
        for _ in range(a.reps):
            for s in ms:
                use(s); _link_next(layers, s != 'off')
                rr, caches = bench_decode(m, card, b, bw, contexts=(128,), batch=16); del caches
                r = {x['metric']: x for x in rr}
                runs[s].append((r['decode_b1_ctx128']['step_ms'], r['decode_b16_ctx128_step']['value'], r['graph_equals_eager_same_bucket']['value']))
        line = []
        for s in ms:
            b1 = statistics.median(x[0] for x in runs[s]); b16 = statistics.median(x[1] for x in runs[s])
            recs.append(dict(card=card, branch=b, setting=s, metric='decode_b1_ctx128_step', value=b1, unit='ms', runs=[x[0] for x in runs[s]],
                             logits_equal_off=same, graph_equals_eager=all(x[2] for x in runs[s])))
            recs.append(dict(card=card, branch=b, setting=s, metric='decode_b16_ctx128_step', value=b16, unit='ms', runs=[x[1] for x in runs[s]]))
            line.append(f"{s} {b1:.2f}/{b16:.2f}")
        print(f"{b:<30} b1/b16 step ms: {', '.join(line)}; logits equal {same}", flush=True)
        del m, layers; gc.collect(); torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"{a.tag}_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
