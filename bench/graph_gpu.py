"""GPU checks of CUDA-graph decode (`qllama.graph`) on a tiny fp16 GPTQ model on the kernels.

The same checks as the `#| cuda` cells of nbs/10b_graph.ipynb, runnable where nbdev is not installed:
graph replay equals the eager kernel step at the same kv_len bit for bit, replays allocate nothing, greedy
generation and the engine give the same tokens with graphs on and off. Run: PYTHONPATH=. python bench/graph_gpu.py
"""
import torch
from qllama.config import ModelConfig, LlamaConfig, QuantConfig
from qllama.load import tiny_config
from qllama.gptq import QuantLinear
from qllama.model import Llama, KVCache
from qllama.fast import use_kernels
from qllama.generate import generate, decode_step, SamplingParams
from qllama.graph import GraphDecoder, use_graphs, decoder_for
from qllama.engine import Engine

def tiny_gpu(seed=0):
    torch.manual_seed(seed)
    q = QuantConfig(bits=4, group_size=32, desc_act=True)
    m = Llama(ModelConfig(llama=LlamaConfig.from_dict(tiny_config(vocab_size=256, max_position_embeddings=1024)), quant=q),
              dtype=torch.float16, device='cuda').eval()
    for mod in m.modules():
        if isinstance(mod, QuantLinear):
            w = torch.randn(mod.out_features, mod.in_features) / mod.in_features**0.5
            mod.load_state_dict(QuantLinear.from_float(w, q, perm=torch.randperm(mod.in_features)).state_dict())
    return use_kernels(m)

def main():
    g = tiny_gpu()
    pos, slots = torch.tensor([300, 17, 90], device='cuda'), torch.tensor([1, 2, 0], device='cuda')
    tokens = torch.tensor([5, 6, 7], device='cuda')
    with torch.inference_mode():
        cache = KVCache(g.config.llama, 3, 1024, torch.float16, 'cuda'); cache.k.normal_(); cache.v.normal_()
        dec = GraphDecoder(g, cache)
        got = dec(tokens, pos, slots, 301).clone()
        again = dec(tokens, pos, slots, 301).clone()
        used = torch.cuda.memory_allocated()
        for _ in range(5): dec(tokens, pos, slots, 301)
        mem_ok = torch.cuda.memory_allocated() == used
        eager_bucket = decode_step(g, tokens, cache, pos, slots, kv_len=512)
        eager_exact = decode_step(g, tokens, cache, pos, slots, kv_len=301)
    print('graphs captured:', list(dec.graphs))
    print('replay == replay:', torch.equal(got, again))
    print('replays allocate nothing:', mem_ok)
    print('graph == eager at same bucket (bitwise):', torch.equal(got, eager_bucket))
    print('graph vs eager at exact kv_len, max abs diff:', (got - eager_exact).abs().max().item())
    assert torch.equal(got, again) and mem_ok and torch.equal(got, eager_bucket)
    torch.testing.assert_close(got, eager_exact, rtol=2e-3, atol=2e-3)
    prompts = [[1, 5, 9, 11], [1, 7], [1, 3, 3, 3, 3, 8]]
    p = SamplingParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=300)
    on = [c.ids for c in generate(use_graphs(g, True), prompts, p)]
    off = [c.ids for c in generate(use_graphs(g, False), prompts, p)]
    print('generate: greedy tokens equal with and without graphs:', on == off, [len(i) for i in on])
    e_on = Engine(use_graphs(g, True), max_batch=4, max_total_tokens=512)
    assert e_on.graph is not None
    r_on = [r.ids for r in e_on.complete(prompts, p)]
    e_off = Engine(use_graphs(g, False), max_batch=4, max_total_tokens=512)
    assert e_off.graph is None
    r_off = [r.ids for r in e_off.complete(prompts, p)]
    print('engine: greedy tokens equal with and without graphs:', r_on == r_off, 'graphs captured:', len(e_on.graph.graphs))
    print('engine vs generate equal:', r_on == on)
    assert on == off and r_on == r_off

if __name__ == '__main__': main()
