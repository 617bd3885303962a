"""A decode step timed three ways on the GPU (random 70B, kernels, CUDA graphs, context 128, batch 1 and 16):
(1) `iso`: one step between synchronizations, as `qllama bench` times it; (2) `b2b`: N steps back to back, each
step's argmax fed to the next on the device (one synchronization at the end); `b2b_same`: N replays with the same
inputs; (3) `generate`: what `qllama.generate.generate` costs a token (greedy, no penalty): the time of a run of
2N + 1 new tokens minus one of N + 1, over N (both capture their graph; prefill cancels).

    PYTHONPATH=.:bench python bench/proto/loop_ab.py --branches main gptq-3bit-128g-actorder_True --out $OUT
"""
import argparse, json, os, time, torch
from qllama.bench import build_model, median_ms
from qllama.fast import use_kernels
from qllama.model import KVCache
from qllama.graph import GraphDecoder
from qllama.generate import generate, SamplingParams

def events_ms(fn):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(); a.record(); fn(); b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--branches', nargs='+', default=['main', 'gptq-3bit-128g-actorder_True'])
    ap.add_argument('--n', type=int, default=64); ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--tag', default='loop_ab'); a = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs = []
    for branch in a.branches:
        m = use_kernels(build_model(branch)); cfg = m.config.llama
        for B in (1, 16):
            cache = KVCache(cfg, B, 512, torch.float16, dev)
            with torch.inference_mode():
                cache.k.normal_(); cache.v.normal_()
                dec = GraphDecoder(m, cache)
                toks, slots = torch.randint(0, cfg.vocab_size, (B,), device=dev), torch.arange(B, device=dev)
                pos = 127 - torch.arange(B, device=dev) % 8
                iso = median_ms(lambda: dec(toks, pos, slots, 128), 30, 3)
                def chain(feed):
                    t, p = toks, pos
                    for _ in range(a.n):
                        out = dec(t, p, slots, 128 + a.n)                  # one KV bucket (256) for the whole run
                        if feed: t, p = out.argmax(-1), p + 1
                chain(True)
                b2b = min(events_ms(lambda: chain(True)) for _ in range(3)) / a.n
                same = min(events_ms(lambda: chain(False)) for _ in range(3)) / a.n
            del dec, cache; torch.cuda.empty_cache()
            prompts = [list(range(3, 131)) for _ in range(B)]              # 128-token prompts
            def gen(n):
                torch.cuda.synchronize(); t0 = time.perf_counter()
                out = generate(m, prompts, SamplingParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=n))
                torch.cuda.synchronize()
                return time.perf_counter() - t0, min(len(c.ids) for c in out)
            gen(a.n + 1)
            (t1, k1), (t2, k2) = gen(a.n + 1), gen(2 * a.n + 1)
            per = (t2 - t1) * 1e3 / a.n
            r = dict(card=card, branch=branch, batch=B, context=128, iso_ms=iso, b2b_ms=b2b, b2b_same_ms=same, generate_ms=per,
                     generate_new_tokens=[k1, k2], n=a.n)
            recs.append(r)
            print(f"{branch[:28]:28} B={B:2}: step ms iso {iso:.2f}, back to back {b2b:.2f} (same inputs {same:.2f}), "
                  f"generate {per:.2f} a step (new tokens {k1}, {k2})", flush=True)
        del m; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"{a.tag}_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
