"""Where the batch-1 kernel's fixed time goes, and programmatic dependent launch (PDL). Old vs new module, on the GPU.

A layer's four M=1 matmuls take ~9 us each above bytes / bandwidth (qkv 19 us for 42 MB). Variants of the new
kernel (`qllama._new_gptq_matmul`): TAIL=0 skips the split-K sum (timing only), TAIL=2 unrolls it, ITERS=1 does one
step per program (launch + ramp + tail), PDL launches each kernel early (weights loaded before `griddepcontrol.wait`).
Then a dependent chain (each matmul's input is the previous one's output) in a CUDA graph, with and without PDL:
bit-identical to eager, and timed per layer.

The prototype module is the committed one plus this file's knobs: make it with
    patch qllama/gptq_matmul.py -o qllama/_new_gptq_matmul.py < bench/proto/gemv_even_proto.patch
(against the module as committed with this file; the first run of gemv_even.py used `ld.global.nc` for x).

    PYTHONPATH=.:bench python bench/proto/gemv_pdl.py
"""
import importlib, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS, relerr

def main():
    new = importlib.import_module('qllama._new_gptq_matmul')
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    out = os.environ.get('OUT', 'bench/results')
    bw = copy_bandwidth(dev); print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for bits, gs in [(4, -1), (4, 128), (3, 128)]:
        name = branch_name(bits, gs)
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
        xs = {K: torch.randn(1, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        for s, (K, N) in JOINED.items():
            floor_us = gm.gptq_matmul_bytes(K, N, bits, gs, 1) / bw / 1e3
            p0 = layers[0][s]; y_old = gm.gptq_matmul(xs[K], p0, x_sorted=True)
            variants = [('old', gm, {}), ('new', new, {}), ('tail2', new, dict(tail=2)), ('pdl tail2', new, dict(tail=2, pdl=True)),
                        ('no tail (timing)', new, dict(tail=0)), ('1 step (timing)', new, dict(iters=1))]
            if s == 'down': variants += [('tail2 split 28', new, dict(tail=2, split_k=28)), ('tail2 nw 8', new, dict(tail=2, num_warps=8))]
            for label, mod, kw in variants:
                try:
                    y = mod.gptq_matmul(xs[K], p0, x_sorted=True, **kw)
                    e = relerr(y, y_old)
                    if 'timing' not in label: assert e < 2e-3, f"relerr to old {e:.1e}"
                    us = graph_time([(lambda p=lay[s], x=xs[K]: mod.gptq_matmul(x, p, x_sorted=True, **kw)) for lay in layers]) / 4 * 1e3
                except Exception as ex:
                    print(f"{name} {s} {label}: {type(ex).__name__}: {str(ex).splitlines()[0][:300]}", flush=True); continue
                r = dict(card=card, branch=name, shape=s, variant=label, us=us, floor_us=floor_us, fraction_of_floor=floor_us / us, relerr_to_old=e)
                recs.append(r); print(f"{name[:14]:<14} {s:<8} {label:<18} {us:6.1f} us {floor_us / us:4.0%}", flush=True)
        # a dependent chain through 4 layers: gate_up -> down -> o -> qkv -> (first 8192 of it) gate_up of the next layer ...
        def chain(mod, kw):
            h = xs[8192]
            for lay in layers:
                nz = lambda t: (t.float() / t.float().norm() * 30).half()       # keeps the chain finite
                g = mod.gptq_matmul(h, lay['gate_up'], x_sorted=True, **kw)        # [1, 57344]
                d = mod.gptq_matmul(nz(g[:, :28672]), lay['down'], x_sorted=True, **kw)
                o = mod.gptq_matmul(nz(d), lay['o'], x_sorted=True, **kw)
                q = mod.gptq_matmul(nz(o), lay['qkv'], x_sorted=True, **kw)
                h = nz(q[:, :8192])
            return h
        ref = chain(gm, {})
        for label, mod, kw in [('old', gm, {}), ('new', new, {}), ('tail2', new, dict(tail=2)), ('pdl tail2', new, dict(tail=2, pdl=True))]:
            eager = chain(mod, kw); torch.cuda.synchronize()
            gr = torch.cuda.CUDAGraph(); st = torch.cuda.Stream()
            with torch.cuda.stream(st):
                chain(mod, kw); torch.cuda.synchronize()
                with torch.cuda.graph(gr): hg = chain(mod, kw)
            gr.replay(); torch.cuda.synchronize()
            same = torch.equal(hg, eager)
            from triton.testing import do_bench
            ms = do_bench(gr.replay, warmup=50, rep=300, return_mode='median')
            r = dict(card=card, branch=name, shape='chain of 4 layers', variant=label, us=ms * 1e3 / 4, graph_equals_eager=same,
                     relerr_to_old=relerr(eager, ref))
            recs.append(r); print(f"{name[:14]:<14} chain/layer {label:<12} {ms * 1e3 / 4:6.1f} us  graph==eager {same}  relerr {r['relerr_to_old']:.1e}", flush=True)
        del layers; torch.cuda.empty_cache()
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, f"gemv_pdl_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(dict(copy_GBps=bw, records=recs), indent=1))

if __name__ == '__main__': main()
