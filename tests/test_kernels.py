"The Triton kernels (norm, SiLU·mul, RoPE, attention) against their fp32 references and the model's own ops: odd shapes, ragged batches, slot maps, and a whole tiny Llama run with every op swapped for its kernel."
import os
import pytest, torch
if not torch.cuda.is_available(): os.environ.setdefault('TRITON_INTERPRET', '1')  # before the kernels are defined
from qllama.config import LlamaConfig, ModelConfig, GenerationConfig
from qllama.model import Llama, KVCache, Attention, MLP, RMSNorm, rms_norm as model_rms_norm, rope_tables, rope_inv_freq
from qllama.model import apply_rope, attend, attn_mask, positions_of
from qllama.norm_kernels import rms_norm, rms_norm_ref, rms_norm_residual, rms_norm_residual_ref, silu_mul, silu_mul_ref
from qllama.rope_kernels import rope, rope_ref
from qllama.attention_kernels import attention, attention_prefill, attention_decode, attention_ref

torch.set_grad_enabled(False)
torch.set_num_threads(1)
DEV = 'cuda' if torch.cuda.is_available() else 'cpu'
TOLS = {torch.float16: 1e-2, torch.bfloat16: 2e-2, torch.float32: 1e-5}
# the interpreter's tl.dot is wrong for bf16 operands (Triton 3.6): bf16 attention is checked on the GPU only
ATTN_DTYPES = [torch.float16] + ([torch.bfloat16] if DEV == 'cuda' else [])

def rel_err(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()
def randn(*shape, dt=torch.float16, scale=1.0): return (torch.randn(*shape, device=DEV) * scale).to(dt)

@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize('shape', [(1, 1), (5, 7), (2, 3, 129), (1000,)])
def test_rms_norm(dt, shape):
    torch.manual_seed(1)
    x, r, w = randn(*shape, dt=dt), randn(*shape, dt=dt, scale=10), (torch.rand(shape[-1], device=DEV) + 0.5).to(dt)
    assert rel_err(rms_norm(x, w, 1e-6), rms_norm_ref(x, w, 1e-6)) < TOLS[dt]
    y, h = rms_norm_residual(x, r, w, 1e-6)
    yr, hr = rms_norm_residual_ref(x, r, w, 1e-6)
    assert torch.equal(hr, x + r)                              # the stream update is the model's own add...
    if dt != torch.bfloat16 or DEV == 'cuda': assert torch.equal(h, hr)  # ...bit for bit (the interpreter
    else: torch.testing.assert_close(h, hr, rtol=1e-2, atol=1e-2)        # truncates fp32 -> bf16 instead of rounding)
    assert rel_err(y, yr) < TOLS[dt]
    assert y.shape == x.shape and y.dtype == dt

def test_rms_norm_matches_model():
    x, w = randn(4, 3, 96), randn(96) + 1
    torch.testing.assert_close(rms_norm(x, w, 1e-5), model_rms_norm(x, w, 1e-5), rtol=1e-2, atol=1e-2)

@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize('shape,block', [((1, 1), 16), ((3, 1000), 128), ((2, 2, 77), 32)])
def test_silu_mul(dt, shape, block):
    a = randn(*shape[:-1], 2 * shape[-1], dt=dt, scale=8)      # large |g|: both tails of the sigmoid
    y = silu_mul(a, BLOCK=block)
    assert y.shape == shape and rel_err(y, silu_mul_ref(a)) < TOLS[dt]
    I = shape[-1]
    assert torch.equal(silu_mul(a[..., :I], a[..., I:], BLOCK=block), y)
    torch.testing.assert_close(y.float(), (torch.nn.functional.silu(a[..., :I].float()) * a[..., I:].float()), rtol=TOLS[dt], atol=TOLS[dt])

def tiny_config(**kw):
    d = dict(architectures=['LlamaForCausalLM'], model_type='llama', vocab_size=96, hidden_size=64, intermediate_size=80,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    return LlamaConfig.from_dict({**d, **kw})

@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize('nh,nkv,d,T', [(4, 2, 16, 1), (5, 1, 32, 3), (16, 16, 64, 2)])
@pytest.mark.parametrize('scaling', [None, {'rope_type': 'linear', 'factor': 2.0}])
def test_rope(dt, nh, nkv, d, T, scaling):
    cfg = tiny_config(head_dim=d, rope_scaling=scaling)
    cos, sin = rope_tables(rope_inv_freq(cfg, 64), 64, DEV)
    B = 3
    q, k = randn(B, T, nh, d, dt=dt).transpose(1, 2), randn(B, T, nkv, d, dt=dt).transpose(1, 2)
    pos = torch.tensor([0, 31, 60], device=DEV)
    P = positions_of(pos, B, T, DEV)
    want_q, want_k = apply_rope(q.float(), cos[P], sin[P]), apply_rope(k.float(), cos[P], sin[P])
    rope(q, k, cos, sin, pos, BLOCK_H=4)
    assert rel_err(q, want_q) < TOLS[dt] and rel_err(k, want_k) < TOLS[dt]

def test_rope_cache_write():
    B, T, nh, nkv, d = 4, 3, 6, 2, 32
    cos, sin = rope_tables(rope_inv_freq(tiny_config(head_dim=d), 64), 64, DEV)
    kc = torch.full((6, nkv, 40, d), float('nan'), device=DEV, dtype=torch.float16); vc = kc.clone()
    q, k, v = randn(B, nh, T, d), randn(B, nkv, T, d), randn(B, nkv, T, d)
    pos, slots = torch.tensor([0, 37, 5, 20], device=DEV), torch.tensor([5, 0, 2, 3], device=DEV)
    qr, kr = rope_ref(q, k, cos, sin, pos)
    rope(q, k, cos, sin, pos, v, kc, vc, slots)
    assert rel_err(q, qr) < 1e-2 and rel_err(k, kr) < 1e-2
    P = positions_of(pos, B, T, DEV)
    assert torch.equal(kc[slots[:, None], :, P], k.transpose(1, 2)) and torch.equal(vc[slots[:, None], :, P], v.transpose(1, 2))
    assert kc.isnan().sum() == kc.numel() - B * T * nkv * d     # nothing else written

@pytest.mark.parametrize('dt', ATTN_DTYPES)
@pytest.mark.parametrize('nh,nkv,d', [(4, 2, 16), (6, 1, 32), (2, 2, 64)])
@pytest.mark.parametrize('T,blocks', [(1, (16, 16)), (7, (16, 16)), (33, (16, 32)), (40, (32, 16))])
def test_attention_prefill(dt, nh, nkv, d, T, blocks):
    torch.manual_seed(2)
    kc, vc = randn(5, nkv, 80, d, dt=dt), randn(5, nkv, 80, d, dt=dt)
    q = randn(3, T, nh, d, dt=dt).transpose(1, 2)
    pos, slots = torch.tensor([0, 11, 80 - T], device=DEV), torch.tensor([4, 0, 2], device=DEV)
    o = attention_prefill(q, kc, vc, pos, slots, *blocks)
    assert o.shape == q.shape and rel_err(o, attention_ref(q, kc, vc, pos, slots)) < TOLS[dt]
    P = positions_of(pos, 3, T, DEV)                            # the model's own attend, mask and gathered rows
    want = attend(q.float(), kc[slots, :, :80].float(), vc[slots, :, :80].float(), attn_mask(P, 80))
    assert rel_err(o, want) < TOLS[dt]

@pytest.mark.parametrize('dt', ATTN_DTYPES)
@pytest.mark.parametrize('nh,nkv,d', [(8, 1, 16), (6, 2, 32), (4, 4, 64)])
@pytest.mark.parametrize('kw', [dict(BLOCK_N=16, target=64), dict(BLOCK_N=16, target=64, merge_max=16), dict(BLOCK_N=32, target=1),
                                dict(merge_max=0), dict()])   # up to 9 chunks: the merge kernel, or the decode kernel's merge
def test_attention_decode(dt, nh, nkv, d, kw):
    torch.manual_seed(3)
    kc, vc = randn(6, nkv, 130, d, dt=dt), randn(6, nkv, 130, d, dt=dt)
    q = randn(5, nh, 1, d, dt=dt)
    pos, slots = torch.tensor([0, 129, 16, 15, 70], device=DEV), torch.tensor([5, 1, 0, 3, 2], device=DEV)
    want = attention_ref(q, kc, vc, pos, slots)
    for kv_len in (None, 130):
        o = attention_decode(q, kc, vc, pos, slots, kv_len=kv_len, **kw)
        assert o.shape == q.shape and rel_err(o, want) < TOLS[dt]
    assert rel_err(attention_prefill(q, kc, vc, pos, slots, 16, 16), want) < TOLS[dt]

@pytest.mark.parametrize('dt', ATTN_DTYPES)
@pytest.mark.parametrize('nh,nkv,d', [(8, 1, 16), (6, 2, 32), (4, 4, 64)] + ([(64, 8, 128)] if DEV == 'cuda' else []))   # + the 70B's heads
@pytest.mark.parametrize('kw', [dict(BLOCK_N=16, target=64), dict(BLOCK_N=32, target=1), dict(merge_max=0), dict()])
def test_attention_decode_rope(dt, nh, nkv, d, kw):
    "RoPE and the cache write inside the decode kernel: the cache and output of `rope` then `attention_decode`."
    torch.manual_seed(4)
    B = 5
    cos, sin = rope_tables(rope_inv_freq(tiny_config(head_dim=d), 160), 160, DEV)
    qkv = randn(B, 1, (nh + 2 * nkv) * d, dt=dt)                        # as the joined q/k/v matmul leaves them
    q, k, v = [t.view(B, 1, -1, d).transpose(1, 2) for t in qkv.split([nh * d, nkv * d, nkv * d], -1)]
    kc0, vc0 = randn(6, nkv, 130, d, dt=dt), randn(6, nkv, 130, d, dt=dt)
    pos, slots = torch.tensor([0, 129, 16, 15, 70], device=DEV), torch.tensor([5, 1, 0, 3, 2], device=DEV)
    kc, vc, qr, kr = kc0.clone(), vc0.clone(), q.clone(), k.clone()
    rope(qr, kr, cos, sin, pos, v, kc, vc, slots)
    want = attention_decode(qr, kc, vc, pos, slots, **kw)
    o = attention_decode(q, kc0, vc0, pos, slots, kv_len=130, rope=(cos, sin, k, v), **kw)
    ulp = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dt]            # an fp32 fma rounded either way: one ulp at most
    torch.testing.assert_close(kc0, kc, rtol=ulp, atol=1e-4); assert torch.equal(vc0, vc)
    torch.testing.assert_close(o, want, rtol=ulp, atol=ulp)
    assert rel_err(o, attention_ref(qr, kc, vc, pos, slots)) < TOLS[dt]

def test_attention_errors():
    kc = randn(2, 2, 8, 16)
    with pytest.raises(ValueError, match='one query per row'): attention_decode(randn(2, 4, 2, 16), kc, kc, 0)
    with pytest.raises(ValueError, match='head_dim'): attention(randn(2, 4, 1, 8), randn(2, 2, 8, 8), randn(2, 2, 8, 8), 0)
    with pytest.raises(ValueError, match='cache rows'): attention(randn(3, 4, 1, 16), kc, kc, 0)

# --- the whole model with every op swapped for its kernel: how model.py calls them

def _attention_forward(self, x, cos, sin, mask=None, cache=None, positions=None, slots=None):
    "Attention.forward on the kernels: RoPE + cache write in one launch, attention straight from the cache."
    B, T, _ = x.shape
    q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)   # [B, nh, T, hd]
    k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # [B, nkv, T, hd]
    v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
    pos = positions[:, 0] if positions is not None else 0              # [B]: each row's first position
    if cache is None:
        rope(q, k, self.rotary.cos, self.rotary.sin, pos)
        y = attention(q, k, v)                                         # fresh keys: plain causal attention
    else:
        kc, vc = cache.k[self.layer], cache.v[self.layer]              # [max_batch, nkv, max_seq, hd]
        rope(q, k, self.rotary.cos, self.rotary.sin, pos, v, kc, vc, slots)
        y = attention(q, kc, vc, pos, slots, kv_len=mask.shape[-1])
    return self.o_proj(y.transpose(1, 2).reshape(B, T, self.nh * self.hd))

def _block_forward(self, x, cos, sin, mask=None, cache=None, positions=None, slots=None):
    "Block.forward with the residual adds fused into the norms."
    h = self.input_layernorm(x)
    a = self.self_attn(h, cos, sin, mask, cache, positions, slots)
    h, x = rms_norm_residual(a, x, self.post_attention_layernorm.weight, self.post_attention_layernorm.eps)
    return x + self.mlp(h)

@pytest.fixture
def kernel_model(monkeypatch):
    "A tiny fp16 Llama, and a function that swaps in the kernels."
    torch.manual_seed(0)
    cfg = ModelConfig(llama=tiny_config(num_hidden_layers=2), quant=None, generation=GenerationConfig(), path=None)
    m = Llama(cfg, dtype=torch.float16, device=DEV).eval()
    for p in m.parameters(): p.data.normal_(0, 0.3)
    for n, p in m.named_parameters():
        if 'norm' in n: p.data.uniform_(0.5, 1.5)
    def swap():
        for blk in m.model.layers: blk.self_attn.rotary = m.model.rotary_emb
        monkeypatch.setattr(Attention, 'forward', _attention_forward)
        monkeypatch.setattr(RMSNorm, 'forward', lambda self, x: rms_norm(x, self.weight, self.eps))
        monkeypatch.setattr(MLP, 'forward', lambda self, x: self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x))))
        monkeypatch.setattr(type(m.model.layers[0]), 'forward', _block_forward)
    return m, swap

def test_model_with_kernels(kernel_model):
    "Prefill of a ragged batch in permuted slots, then two ragged decode steps: kernel logits vs the model's own."
    m, swap = kernel_model
    cfg = m.config.llama
    ids = torch.randint(0, cfg.vocab_size, (3, 9), device=DEV)
    slots, pos0 = torch.tensor([2, 0, 3], device=DEV), torch.tensor([0, 4, 1], device=DEV)
    def run():
        cache = KVCache(cfg, 4, 32, torch.float16, DEV)
        outs = [m(ids[:, :6], cache, pos0, slots, kv_len=int(pos0.max()) + 6)]
        for t in (6, 7):
            outs.append(m(ids[:, t:t + 1], cache, pos0 + t, slots, kv_len=int(pos0.max()) + t + 1))
        outs.append(m(ids))                                        # no cache: plain causal forward
        return outs
    want = run()
    swap()
    got = run()
    for g, w in zip(got, want):
        assert rel_err(g, w) < 2e-2, rel_err(g, w)
