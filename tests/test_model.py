"qllama.model against transformers' LlamaForCausalLM: configs x RoPE scaling x prefill/decode/continuous batching."
import inspect, pytest, torch, transformers
from dataclasses import replace
from qllama.config import LlamaConfig, ModelConfig, QuantConfig, fixture_path
from qllama.gptq import QuantLinear, dequantize, checkpoint_bytes
from qllama.model import Llama, KVCache

torch.set_grad_enabled(False)
torch.set_num_threads(1)  # tiny tensors: extra threads only contend (50x slower on a busy 2-core CI box)
TOL = 1e-4  # fp32: max |ours - ref| / max |ref|

BASE = dict(model_type='llama', architectures=['LlamaForCausalLM'], vocab_size=128, hidden_size=64,
            intermediate_size=160, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=16, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
CONFIGS = {
    'gqa': {},
    'mha': dict(num_key_value_heads=4),
    'mqa_bias': dict(num_key_value_heads=1, head_dim=32, attention_bias=True, mlp_bias=True),
    'tied': dict(tie_word_embeddings=True),
    'head_dim32': dict(head_dim=32, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0),
}
ROPES = {'none': None, 'linear': {'rope_type': 'linear', 'factor': 2.0}, 'dynamic': {'type': 'dynamic', 'factor': 3.0}}
N = 24  # tokens per test sequence: past max_position_embeddings=16, so dynamic scaling kicks in

def config_dict(name, rope):
    "A config.json dict; fresh copies, since transformers writes into the rope_scaling dict it is given."
    rs = ROPES[rope]
    return {**BASE, **CONFIGS[name], 'rope_scaling': dict(rs) if rs else None}

def rel_err(a, b): return ((a - b).abs().max() / b.abs().max()).item()

def twins(d, seed=0, dtype=torch.float32):
    "A transformers Llama with lively random weights, and our Llama loaded from its state dict."
    torch.manual_seed(seed)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**d)).float().eval()
    for name, p in hf.named_parameters():
        p.copy_(1 + 0.1 * torch.randn_like(p) if 'norm' in name else torch.randn_like(p) / p.shape[-1]**0.5 * 2)
    ours = Llama(ModelConfig(LlamaConfig.from_dict(d)), dtype=dtype).eval()
    ours.load_state_dict(hf.state_dict())
    return hf, ours

def hf_logits(hf, ids, **kw):
    "transformers' full forward; a 1-token call first resets dynamic RoPE's cached base (it only grows otherwise)."
    hf(ids[:, :1])
    return hf(ids, **kw).logits

def hf_decode(hf, ids, k):
    "transformers' own cached generation: prefill k tokens, then one at a time; logits [B, len-k+1 steps]."
    kw = 'cache' if 'cache' in inspect.signature(hf.forward).parameters else 'past_key_values'  # renamed in 5.2x
    hf(ids[:, :1])
    out = hf(ids[:, :k], use_cache=True)
    cache, logits = getattr(out, kw), [out.logits[:, -1]]
    for t in range(k, ids.shape[1]):
        out = hf(ids[:, t:t+1], **{kw: cache}, use_cache=True)
        cache = getattr(out, kw)
        logits.append(out.logits[:, -1])
    return logits  # logits[j]: at position k-1+j

@pytest.fixture(scope='module')
def ids():
    torch.manual_seed(1)
    return torch.randint(0, 128, (2, N))

@pytest.mark.parametrize('name', CONFIGS)
def test_state_dict_names(name):
    hf, ours = twins(config_dict(name, 'none'))
    assert set(ours.state_dict()) == set(hf.state_dict())
    for k, v in hf.state_dict().items(): assert ours.state_dict()[k].shape == v.shape, k

@pytest.mark.parametrize('rope', ROPES)
@pytest.mark.parametrize('name', CONFIGS)
def test_prefill(name, rope, ids):
    hf, ours = twins(config_dict(name, rope))
    for T in (7, N):  # within and beyond max_position_embeddings
        ref = hf_logits(hf, ids[:, :T])
        assert rel_err(ours(ids[:, :T]), ref) < TOL
        cache = KVCache(ours.config.llama, 2, 32, torch.float32)
        assert rel_err(ours(ids[:, :T], cache), ref) < TOL
        last = ours(ids[:, :T], last_only=True)
        assert last.shape == (2, 1, 128) and last.dtype == torch.float32
        assert rel_err(last[:, 0], ref[:, -1]) < TOL

@pytest.mark.parametrize('rope', ROPES)
@pytest.mark.parametrize('name', CONFIGS)
def test_decode(name, rope, ids):
    "Prefill 5 tokens, then decode to N one token at a time through the KV cache."
    hf, ours = twins(config_dict(name, rope))
    k, M = 5, BASE['max_position_embeddings']
    hf_steps = hf_decode(hf, ids, k)
    hf_full = [hf_logits(hf, ids[:, :t+1])[:, t] for t in range(k - 1, N)]
    for kv_len in (None, 32):  # exactly the keys needed, or a fixed length (as a CUDA graph would use)
        cache = KVCache(ours.config.llama, 2, 32, torch.float32)
        ours_steps = [ours(ids[:, :k], cache, last_only=True, kv_len=kv_len)[:, 0]]
        ours_steps += [ours(ids[:, t:t+1], cache, pos=t, kv_len=kv_len)[:, 0] for t in range(k, N)]
        for j, (o, h, f) in enumerate(zip(ours_steps, hf_steps, hf_full)):
            t = k - 1 + j  # position of this step's token
            assert rel_err(o, h) < TOL, (t, rel_err(o, h))  # transformers' cached generation, every step
            # and transformers' full forward over the prefix: the same function, except that past
            # max_position_embeddings dynamic RoPE rotates every cached key with an older base than a fresh forward would
            if rope != 'dynamic' or t < M: assert rel_err(o, f) < TOL, t
            else: assert rel_err(o, f) > 1e-2, t  # the difference is real, not noise

@pytest.mark.parametrize('kv_len', [None, 16])
@pytest.mark.parametrize('rope', ROPES)
@pytest.mark.parametrize('name', ['gqa', 'mqa_bias', 'tied'])
def test_continuous_batch(name, rope, kv_len):
    "Three requests of different lengths in scattered slots, decoded together with per-row positions."
    hf, ours = twins(config_dict(name, rope))
    torch.manual_seed(2)
    seqs = [torch.randint(0, 128, (n,)) for n in (13, 11, 15)]  # all within max_position_embeddings=16
    refs = [hf_logits(hf, s[None])[0] for s in seqs]
    cache = KVCache(ours.config.llama, 5, 16, torch.float32)
    slots = torch.tensor([3, 0, 4])
    starts = [4, 2, 6]  # each request prefilled alone to a different length
    for s, st, slot, ref in zip(seqs, starts, slots, refs):
        assert rel_err(ours(s[None, :st], cache, slots=slot[None])[0], ref[:st]) < TOL
    pos = torch.tensor(starts)
    for T in (3, 1, 1, 2, 1, 1):  # chunks of new tokens, the same T for every row
        out = ours(torch.stack([s[p:p+T] for s, p in zip(seqs, pos.tolist())]), cache, pos=pos, slots=slots, kv_len=kv_len)
        assert out.shape == (3, T, 128)
        for row, (p, ref) in enumerate(zip(pos.tolist(), refs)): assert rel_err(out[row], ref[p:p+T]) < TOL, (row, p)
        pos = pos + T
    # the slot not in use was never written
    assert cache.k[:, [1, 2]].abs().sum() == 0

@pytest.mark.parametrize('rope', ['none', 'linear'])
def test_offset_without_cache(rope, ids):
    "Without a cache, `pos` shifts RoPE positions of a plain causal forward (transformers' position_ids)."
    hf, ours = twins(config_dict('gqa', rope))
    pos = torch.tensor([0, 6])
    ref = hf(ids[:, :8], position_ids=torch.arange(8) + pos[:, None]).logits
    assert rel_err(ours(ids[:, :8], pos=pos), ref) < TOL
    ref1 = hf(ids[:1, :8], position_ids=torch.arange(6, 14)[None]).logits
    assert rel_err(ours(ids[:1, :8], pos=6), ref1) < TOL

def test_tied_checkpoint_without_lm_head():
    hf, ours = twins(config_dict('tied', 'none'))
    sd = {k: v for k, v in hf.state_dict().items() if k != 'lm_head.weight'}  # what save_pretrained writes
    fresh = Llama(ModelConfig(LlamaConfig.from_dict(config_dict('tied', 'none'))), dtype=torch.float32)
    fresh.load_state_dict(sd)
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight
    ids = torch.arange(10)[None]
    assert rel_err(fresh(ids), hf(ids).logits) < TOL

def test_cache_is_not_reallocated(ids):
    hf, ours = twins(config_dict('gqa', 'none'))
    cache = KVCache(ours.config.llama, 2, 32, torch.float32)
    ptrs = cache.k.data_ptr(), cache.v.data_ptr()
    ours(ids[:, :5], cache)
    for t in range(5, 12): ours(ids[:, t:t+1], cache, pos=torch.tensor([t, t]))
    assert (cache.k.data_ptr(), cache.v.data_ptr()) == ptrs and cache.k.shape == (3, 2, 2, 32, 16)

def test_fp16(ids):
    "fp16 weights and cache: close to fp32 (fp16 rounding only), prefill and cached decode agree."
    d = config_dict('gqa', 'none')
    _, o32 = twins(d)
    o16 = Llama(ModelConfig(LlamaConfig.from_dict(d)), dtype=torch.float16).eval()
    o16.load_state_dict(o32.state_dict())
    full = o16(ids[:, :12])
    assert full.dtype == torch.float32 and rel_err(full, o32(ids[:, :12])) < 1e-2
    cache = KVCache(o16.config.llama, 2, 16, torch.float16)
    o16(ids[:, :6], cache)
    for t in range(6, 12): assert rel_err(o16(ids[:, t:t+1], cache, pos=t)[:, 0], full[:, t]) < 1e-2

def test_errors(ids):
    _, ours = twins(config_dict('gqa', 'none'))
    cache = KVCache(ours.config.llama, 2, 8, torch.float32)
    with pytest.raises(ValueError, match='max_seq=8'): ours(ids[:, :9], cache)
    with pytest.raises(ValueError, match='max_seq=8'): ours(ids[:, :1], cache, pos=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match='max_batch=2'): ours(torch.zeros(3, 1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match='slots'): ours(ids[:, :1], cache, slots=torch.tensor([0]))

QUANTS = {
    '4bit_g32_actorder': QuantConfig(bits=4, group_size=32, desc_act=True),
    '4bit_nogroup': QuantConfig(bits=4, group_size=-1),
    '3bit_g32_asym_actorder': QuantConfig(bits=3, group_size=32, desc_act=True, sym=False),
    '8bit_g64_v2': QuantConfig(bits=8, group_size=64, sym=False, checkpoint_format='gptq_v2'),
    '2bit_g16_static': QuantConfig(bits=2, group_size=16, desc_act=True, static_groups=True),
}

def quant_twins(d, quant, seed=0):
    "Our GPTQ Llama from random weights quantized round-to-nearest, and transformers with the dequantized weights."
    hf, _ = twins(d, seed)
    ours = Llama(ModelConfig(LlamaConfig.from_dict(d), quant), dtype=torch.float32).eval()
    sd, g = dict(hf.state_dict()), torch.Generator().manual_seed(seed)
    for name, m in ours.named_modules():
        if not isinstance(m, QuantLinear): continue
        w, b = sd.pop(name + '.weight'), sd.pop(name + '.bias', None)  # [out, in], [out]
        ql = QuantLinear.from_float(w, quant, bias=b, perm=torch.randperm(w.shape[1], generator=g) if quant.desc_act else None, dtype=torch.float32)
        sd.update({f'{name}.{k}': v for k, v in ql.state_dict().items()})
        hf.get_submodule(name).weight.copy_(dequantize(ql.qweight, ql.qzeros, ql.scales, ql.g_idx, quant.bits,
                                                       quant.checkpoint_format == 'gptq_v2').T)
    ours.load_state_dict(sd)
    return hf, ours

@pytest.mark.parametrize('q', QUANTS)
@pytest.mark.parametrize('name', ['gqa', 'mqa_bias'])
def test_quantized(name, q, ids):
    "GPTQ projections: prefill and cached decode equal transformers running the dequantized weights."
    hf, ours = quant_twins(config_dict(name, 'none'), QUANTS[q])
    assert sum(isinstance(m, QuantLinear) for m in ours.modules()) == 7 * BASE['num_hidden_layers']
    ref = hf_logits(hf, ids)
    assert rel_err(ours(ids), ref) < TOL
    cache = KVCache(ours.config.llama, 2, 32, torch.float32)
    assert rel_err(ours(ids[:, :9], cache), ref[:, :9]) < TOL
    for t in range(9, N): assert rel_err(ours(ids[:, t:t+1], cache, pos=t)[:, 0], ref[:, t]) < TOL, t

def test_codellama_70b_layout():
    "CodeLlama-70B-GPTQ built on the meta device: every tensor name, shape and dtype of the checkpoint format."
    mc = ModelConfig.from_dir(fixture_path('codellama-70b-instruct-gptq'))
    m = Llama(mc, device='meta')
    sd = m.state_dict()
    assert len(sd) == 80 * (7 * 5 + 2) + 3
    assert sum(v.numel() * v.element_size() for v in sd.values()) == checkpoint_bytes(mc.llama, mc.quant) == 35_332_390_912
    shapes = {'qweight': (torch.int32, (8192 // 8, 8192)), 'qzeros': (torch.int32, (1, 1024)),
              'scales': (torch.float16, (1, 8192)), 'g_idx': (torch.int32, (8192,)), 'bias': (torch.float16, (8192,))}
    for k, (dt, shape) in shapes.items():
        v = sd[f'model.layers.79.self_attn.q_proj.{k}']
        assert (v.dtype, tuple(v.shape)) == (dt, shape), k
    assert tuple(sd['model.layers.0.mlp.down_proj.qweight'].shape) == (28672 // 8, 8192)
    assert tuple(sd['model.layers.0.self_attn.k_proj.qweight'].shape) == (1024, 1024)
    assert tuple(sd['lm_head.weight'].shape) == (32016, 8192) and sd['lm_head.weight'].dtype == torch.float16
    assert m.model.rotary_emb.cos.shape == (4096, 128)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

@cuda
@pytest.mark.parametrize('rope', ROPES)
def test_cuda_matches_cpu(rope, ids):
    "On the GPU (SDPA's CUDA kernels, index_put into the cache): fp32 matches transformers, fp16 is close."
    hf, ours = twins(config_dict('gqa', rope))
    ref = hf_logits(hf, ids[:, :16])  # within max_position_embeddings: one base for every dynamic step
    dev, ids_d = 'cuda', ids.cuda()
    for dtype, tol in ((torch.float32, 1e-3), (torch.float16, 2e-2)):
        m = Llama(ours.config, dtype=dtype, device=dev).eval()
        m.load_state_dict(ours.state_dict())
        assert rel_err(m(ids_d[:, :12]).cpu(), ref[:, :12]) < tol
        cache = KVCache(m.config.llama, 2, 32, dtype, dev)
        m(ids_d[:, :12], cache)
        for t in range(12, 16): assert rel_err(m(ids_d[:, t:t+1], cache, pos=torch.tensor([t, t], device=dev))[:, 0].cpu(), ref[:, t]) < tol

@cuda
def test_cuda_graph_decode(ids):
    "A decode step captured once in a CUDA graph (fixed kv_len, tensor pos) replays to the eager logits."
    hf, ours = twins(config_dict('mqa_bias', 'linear'))
    m = Llama(ours.config, dtype=torch.float16, device='cuda').eval()
    m.load_state_dict(ours.state_dict())
    ids = ids.cuda()
    k, S, slots = 6, 32, torch.tensor([1, 0], device='cuda')
    eager_cache, graph_cache = (KVCache(m.config.llama, 2, S, torch.float16, 'cuda') for _ in range(2))
    m(ids[:, :k], eager_cache, slots=slots); m(ids[:, :k], graph_cache, slots=slots)
    tok, pos = ids[:, k:k+1].clone(), torch.full((2,), k, device='cuda')
    step = lambda: m(tok, graph_cache, pos=pos, slots=slots, kv_len=S)
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2): step()  # warm-up: grows the RoPE tables to S, picks kernels
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): out = step()
    ptrs = graph_cache.k.data_ptr()
    for t in range(k, N):
        tok.copy_(ids[:, t:t+1]); pos.fill_(t)
        g.replay()
        want = m(ids[:, t:t+1], eager_cache, pos=t, slots=slots)
        torch.testing.assert_close(out, want, rtol=1e-3, atol=1e-3)
    assert graph_cache.k.data_ptr() == ptrs
    torch.testing.assert_close(graph_cache.k[:, :, :, :N], eager_cache.k[:, :, :, :N], rtol=1e-3, atol=1e-3)
