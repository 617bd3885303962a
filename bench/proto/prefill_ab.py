"""A/B of `attn_out_sorted` on a 2048-token prefill of the whole random 70B, in one process.

Prefill attention wrote its output straight into `o`'s act-order sorted order (scattered 2-byte stores, 2048 rows)
where `attn_out_sorted` was on (the default since the seventh run); without it, `o` gathers its input first (one
gather launch). This timed the two alternately (median of 5 prefills each, 3 alternations) and checked they give the
same logits: the gather won by 2% (`bench/results/prefill_ab_NVIDIA_H200.json`, 2026-11-29, the code of
commit 06bcbae), so attention now writes `o`'s order for decode rows only (at most 16), and both arms of this script now run
the gather path for a prompt: it stays as the record of that A/B (and checks that toggling `_o_inv` changes no logit).

    PYTHONPATH=. python bench/proto/prefill_ab.py --out $OUT [--branches gptq-4bit-128g-actorder_True]
    TRITON_INTERPRET=1 PYTHONPATH=. python bench/proto/prefill_ab.py --smoke    # CPU: a tiny model, logits only
"""
import argparse, json, os, statistics
import torch
from qllama.bench import build_model, median_ms
from qllama.fast import use_kernels
from qllama.model import KVCache

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True')
    ap.add_argument('--tokens', type=int, default=2048)
    ap.add_argument('--smoke', action='store_true')
    a = ap.parse_args()
    dev = torch.device('cpu' if a.smoke else 'cuda')
    card = 'CPU smoke' if a.smoke else torch.cuda.get_device_name(dev)
    tiny, T = None, (24 if a.smoke else a.tokens)
    if a.smoke:
        from qllama.config import LlamaConfig
        from qllama.load import tiny_config
        tiny = LlamaConfig.from_dict(tiny_config(vocab_size=128, hidden_size=256, intermediate_size=512))
    recs = []
    for b in a.branches.split(','):
        m = use_kernels(build_model(b, tiny, device=dev))
        cfg = m.config.llama
        inv = [l.self_attn._o_inv for l in m.model.layers]
        def mode(on):
            for l, i in zip(m.model.layers, inv): l.self_attn._o_inv = i if on else None
        cache = KVCache(cfg, 1, T, torch.float16, dev)
        ids = torch.randint(0, cfg.vocab_size, (1, T), device=dev)
        run = lambda: m(ids, cache, 0, last_only=True, kv_len=T)
        with torch.inference_mode():
            out = {}
            for on in (True, False): mode(on); out[on] = run().clone()
            same = torch.equal(out[True], out[False])
            print(f"{b}: logits equal with and without attn_out_sorted: {same}", flush=True)
            if a.smoke: assert same; continue
            ts = {True: [], False: []}
            for _ in range(3):
                for on in (True, False): mode(on); ts[on].append(median_ms(run, 5, 1))
        for on in (True, False):
            recs.append(dict(card=card, branch=b, metric=f'prefill_{T}_ms', attn_out_sorted=on, value=statistics.median(ts[on]),
                             unit='ms', runs=ts[on], logits_equal=same))
        print(f"{b}: prefill {T} ms, attn_out_sorted on {statistics.median(ts[True]):.1f} {ts[True]}, off {statistics.median(ts[False]):.1f} {ts[False]}", flush=True)
        del m, cache; torch.cuda.empty_cache()
    if recs:
        os.makedirs(a.out, exist_ok=True)
        open(os.path.join(a.out, f"prefill_ab_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
