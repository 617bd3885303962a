"""Whole-model check and per-layer decode timing at Code Llama 70B's width, on the GPU.

A Llama with the 70B's hidden size, MLP, heads and vocabulary but LAYERS layers, random GPTQ weights made
directly on the GPU (4-bit 128g act-order by default; --bits/--group-size for the other branches). It runs
the torch reference path, then `use_kernels` on the same weights, and compares: logits cosine on a prefill
and greedy tokens over a decode. Then it times one decode step (batch 1, context 128) of both paths.
Prints a short table last; writes JSON records to $OUT (or bench/results/).
"""
import argparse, json, os, time
import torch
from qllama.config import ModelConfig, LlamaConfig, QuantConfig, fixture_path
from qllama.gptq import QuantLinear, pack_cols
from qllama.model import Llama, KVCache
from qllama.fast import use_kernels

def random_gptq_(m:QuantLinear, g:torch.Generator):
    "Fill a QuantLinear with random, well-formed GPTQ tensors (act-order g_idx), on its device."
    q, dev = m.quant, m.qweight.device
    m.qweight.copy_(torch.randint(-2**31, 2**31 - 1, m.qweight.shape, generator=g, device=dev, dtype=torch.int64).int())
    # symmetric zero points, stored minus one (v1): 2**(bits-1) - 1 in every field
    m.qzeros.copy_(pack_cols(torch.full((m.qzeros.shape[0], m.out_features), 2**(q.bits - 1) - 1, dtype=torch.int32, device=dev), q.bits))
    m.scales.copy_((torch.rand(m.scales.shape, generator=g, device=dev) + 0.5) * (0.5 / m.in_features**0.5))
    G = q.n_groups(m.in_features)
    m.g_idx.copy_((torch.randperm(m.in_features, generator=g, device=dev) % G).int() if G > 1 else torch.zeros_like(m.g_idx))

def build(layers, bits, group_size, seed=0):
    cfg = json.loads(fixture_path('codellama-70b-instruct-gptq', 'config.json').read_text()) | {'num_hidden_layers': layers}
    quant = QuantConfig(bits=bits, group_size=group_size, desc_act=True)
    mc = ModelConfig(llama=LlamaConfig.from_dict(cfg), quant=quant)
    m = Llama(mc, dtype=torch.float16, device='cuda').eval()
    m.config = mc
    g = torch.Generator(device='cuda').manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, QuantLinear): random_gptq_(mod, g)
        for b in m.model.layers:   # one act-order per input, as GPTQ makes them (q/k/v and gate/up share a Hessian)
            for l in (b.self_attn.k_proj, b.self_attn.v_proj): l.g_idx.copy_(b.self_attn.q_proj.g_idx)
            b.mlp.up_proj.g_idx.copy_(b.mlp.gate_proj.g_idx)
        m.model.embed_tokens.weight.normal_(0, 1, generator=g)
        m.lm_head.weight.normal_(0, 1 / 8192**0.5, generator=g)
    return m

@torch.no_grad()
def greedy(m, prompt, n):
    cache = KVCache(m.config.llama, 1, prompt.shape[1] + n, torch.float16, 'cuda')
    logits = m(prompt, cache, 0, last_only=True)[:, -1]
    out = []
    for t in range(n):
        nxt = logits.argmax(-1)
        out.append(int(nxt))
        logits = m(nxt[:, None], cache, prompt.shape[1] + t)[:, -1]
    return out

@torch.no_grad()
def decode_ms(m, ctx=128, iters=50):
    "Median ms of one batch-1 decode step at context `ctx` (events; no CUDA graph)."
    cache = KVCache(m.config.llama, 1, ctx + 1, torch.float16, 'cuda')
    x = torch.randint(0, 32016, (1, 1), device='cuda')
    for _ in range(5): m(x, cache, ctx, kv_len=ctx + 1)
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); m(x, cache, ctx, kv_len=ctx + 1); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--layers', type=int, default=2); p.add_argument('--bits', type=int, default=4)
    p.add_argument('--group-size', type=int, default=128); p.add_argument('--tokens', type=int, default=16)
    a = p.parse_args()
    card = torch.cuda.get_device_name()
    m = build(a.layers, a.bits, a.group_size)
    prompt = torch.randint(0, 32016, (1, 64), device='cuda', generator=torch.Generator(device='cuda').manual_seed(1))
    with torch.no_grad(): ref = m(prompt).float()
    ref_tokens, ref_ms = greedy(m, prompt, a.tokens), decode_ms(m)
    use_kernels(m)
    with torch.no_grad(): got = m(prompt).float()
    finite = (torch.isfinite(ref).float().mean().item(), torch.isfinite(got).float().mean().item())
    if finite != (1.0, 1.0): print(f"finite fraction of logits: reference {finite[0]:.6f}, kernels {finite[1]:.6f}")
    cos = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0).item()
    tokens, ms = greedy(m, prompt, a.tokens), decode_ms(m)
    branch = {(4, -1): 'main', (4, 128): 'gptq-4bit-128g-actorder_True', (4, 32): 'gptq-4bit-32g-actorder_True',
              (3, -1): 'gptq-3bit--1g-actorder_True', (3, 128): 'gptq-3bit-128g-actorder_True', (3, 32): 'gptq-3bit-32g-actorder_True'}[(a.bits, a.group_size)]
    recs = [dict(card=card, branch=branch, metric='logits_cosine_kernels_vs_reference', value=cos, unit='', layers=a.layers),
            dict(card=card, branch=branch, metric='greedy_tokens_equal', value=tokens == ref_tokens, unit='', tokens=a.tokens),
            dict(card=card, branch=branch, metric='decode_step_reference', value=ref_ms, unit='ms', layers=a.layers, context=128, batch=1),
            dict(card=card, branch=branch, metric='decode_step_kernels', value=ms, unit='ms', layers=a.layers, context=128, batch=1)]
    out = os.environ.get('OUT') or 'bench/results'
    with open(os.path.join(out, f"model_gpu_{card.replace(' ', '_')}_{branch}.json"), 'w') as f: json.dump(recs, f, indent=1)
    print(f"\n{card}, {a.layers} layers of 70B width, {branch}")
    print(f"logits cosine (kernels vs reference): {cos:.6f}   greedy {a.tokens} tokens equal: {tokens == ref_tokens}")
    print(f"decode step, batch 1, ctx 128: reference {ref_ms:.2f} ms, kernels {ms:.2f} ms (no CUDA graph; {a.layers} layers + lm_head)")

if __name__ == '__main__': main()
