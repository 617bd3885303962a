"""The full sweep of the GPTQ format (nbs/03_gptq.ipynb): packing, act-order, zero formats, QuantLinear, sizes, and interop with GPTQModel."""
import json
import pytest
import torch
from qllama.config import QuantConfig, LlamaConfig, ConfigError, fixture_path
from qllama.gptq import (pack_rows, unpack_rows, pack_cols, unpack_cols, dequantize, quantize_rtn, make_g_idx,
                         QuantLinear, make_linear, gptq_matmul_ref, linear_bytes, checkpoint_bytes)

BITS = [2, 3, 4, 8]
GROUPS = [-1, 32, 64, 128, 48]          # 48 does not divide 256: groups of 48 x 5 and one of 16
ORDERS = ['plain', 'act', 'static']     # no act-order; act-order; act-order with static groups
IN, OUT = 256, 64


def signed(u): return u - 2**32 if u >= 2**31 else u

def ref_pack(vals, bits):
    "Independent reference: one Python integer as the bit stream, value k at bits [bits*k, bits*k+bits)."
    stream = sum(int(v) << bits * k for k, v in enumerate(vals))
    return [signed(stream >> 32 * w & 0xFFFFFFFF) for w in range(len(vals) * bits // 32)]


def quant_for(bits, gs, order, sym, fmt):
    return QuantConfig(bits=bits, group_size=gs, desc_act=order != 'plain', static_groups=order == 'static',
                       sym=sym, checkpoint_format=fmt)


@pytest.mark.parametrize('fmt', ['gptq', 'gptq_v2'])
@pytest.mark.parametrize('sym', [True, False])
@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('gs', GROUPS)
@pytest.mark.parametrize('bits', BITS)
def test_rtn_roundtrip(bits, gs, order, sym, fmt):
    torch.manual_seed(bits * 1000 + gs)
    quant = quant_for(bits, gs, order, sym, fmt)
    w = torch.randn(OUT, IN) * torch.rand(OUT, 1)                         # rows of different ranges
    perm = torch.randperm(IN) if order != 'plain' else None
    r = quantize_rtn(w, quant, perm)
    G = quant.n_groups(IN)
    assert {k: (v.dtype, tuple(v.shape)) for k, v in r.items()} == dict(
        qweight=(torch.int32, (IN * bits // 32, OUT)), qzeros=(torch.int32, (G, OUT * bits // 32)),
        scales=(torch.float16, (G, OUT)), g_idx=(torch.int32, (IN,)))
    # g_idx: consecutive groups, or groups in perm order for act-order without static groups
    pos = torch.arange(IN)
    if gs == -1: expect = torch.zeros(IN, dtype=torch.long)
    elif order == 'act': expect = torch.empty(IN, dtype=torch.long); expect[perm] = pos // gs
    else: expect = pos // gs
    assert torch.equal(r['g_idx'].long(), expect)
    # every weight within half a step of its group's scale
    v2 = fmt == 'gptq_v2'
    W = dequantize(r['qweight'], r['qzeros'], r['scales'].float(), r['g_idx'], bits, v2)   # [in, out], exact in fp32
    step = r['scales'].float()[r['g_idx'].long()]
    assert ((W - w.T).abs() <= step / 2 * (1 + 1e-6)).all()
    # unpack -> pack gives the same words, and the words match an independent bit-stream packer
    q, zs = unpack_rows(r['qweight'], bits), unpack_cols(r['qzeros'], bits)
    assert torch.equal(pack_rows(q, bits), r['qweight'])
    assert torch.equal(pack_cols(zs, bits), r['qzeros'])
    for n in range(0, OUT, 13):
        assert r['qweight'][:, n].tolist() == ref_pack(q[:, n].tolist(), bits)
    for g in range(G):
        assert r['qzeros'][g].tolist() == ref_pack(zs[g].tolist(), bits)
    z = zs + (0 if v2 else 1)
    maxq = 2**bits - 1
    assert z.min() >= (0 if v2 else 1) and z.max() <= maxq                # v1 never needs a stored -1
    if sym: assert (z == 2**(bits - 1)).all()
    # the fp16 dequantization equals the fp32 one rounded
    assert torch.equal(dequantize(**r, bits=bits, v2=v2), W.half())


@pytest.mark.parametrize('bits', BITS)
def test_v1_v2_same_weights(bits):
    w = torch.randn(OUT, IN)
    for sym in (True, False):
        r1, r2 = (quantize_rtn(w, QuantConfig(bits=bits, group_size=32, sym=sym, checkpoint_format=f)) for f in ('gptq', 'gptq_v2'))
        z1, z2 = unpack_cols(r1['qzeros'], bits) + 1, unpack_cols(r2['qzeros'], bits)
        same = (z1 == z2)                                                 # groups whose zero v1 did not have to move
        if sym: assert same.all()
        W1, W2 = dequantize(**r1, bits=bits), dequantize(**r2, bits=bits, v2=True)
        cols = same.all(0)
        assert torch.equal(W1[:, cols], W2[:, cols])
        # the same packed weights read as v1 and as v2 (zeros rewritten value by value) give the same W
        conv = pack_cols(unpack_cols(r1['qzeros'], bits) + 1, bits)
        assert torch.equal(dequantize(r1['qweight'], conv, r1['scales'], r1['g_idx'], bits, v2=True), W1)


def test_3bit_words_match_table():
    vals = [(5 * k + 3) % 8 for k in range(32)]
    vals[10], vals[21] = 0b101, 0b110
    w0 = sum(vals[k] << 3 * k for k in range(10)) | (vals[10] & 0b11) << 30   # v10: low two bits in w0 bits 30-31
    w1 = (vals[10] >> 2) | sum(vals[k] << 3 * (k - 11) + 1 for k in range(11, 21)) | (vals[21] & 1) << 31
    w2 = (vals[21] >> 1) | sum(vals[k] << 3 * (k - 22) + 2 for k in range(22, 32))  # v21: high two bits in w2 0-1
    words = [signed(w) for w in (w0, w1, w2)]
    q = torch.tensor(vals)[:, None].repeat(1, 32)                        # [32, 32]
    assert pack_rows(q, 3)[:, 0].tolist() == words
    assert pack_cols(q.T, 3)[0].tolist() == words
    assert unpack_rows(torch.tensor(words, dtype=torch.int32)[:, None], 3)[:, 0].tolist() == vals


@pytest.mark.parametrize('bits', BITS)
def test_sign_bit_words(bits):
    "Words with bit 31 set (negative int32) unpack with logical-shift semantics."
    maxq = 2**bits - 1
    q = torch.full((32 * 4, 3), maxq)
    words = pack_rows(q, bits)
    assert (words == -1).all()
    assert (unpack_rows(words, bits) == maxq).all()


def test_sym4_qzeros_words():
    r = quantize_rtn(torch.randn(128, 512), QuantConfig(bits=4, group_size=128, desc_act=True, sym=True), torch.randperm(512))
    assert (r['qzeros'] == 0x77777777).all()
    r = quantize_rtn(torch.randn(128, 512), QuantConfig(bits=4, sym=True, checkpoint_format='gptq_v2'))
    assert (r['qzeros'] == signed(0x88888888)).all()


@pytest.mark.parametrize('bits', BITS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_quantlinear_forward(bits, dtype):
    torch.manual_seed(bits)
    quant = QuantConfig(bits=bits, group_size=64, desc_act=True, sym=False)
    w, b = torch.randn(96, 320), torch.randn(96)
    ql = QuantLinear.from_float(w, quant, bias=b, perm=torch.randperm(320))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in ql.state_dict().items()} == dict(
        qweight=(torch.int32, (320 * bits // 32, 96)), qzeros=(torch.int32, (5, 96 * bits // 32)),
        scales=(torch.float16, (5, 96)), g_idx=(torch.int32, (320,)), bias=(torch.float16, (96,)))
    x = torch.randn(2, 5, 320, dtype=dtype)
    W = dequantize(ql.qweight, ql.qzeros, ql.scales, ql.g_idx, bits)
    y = ql(x)
    assert y.dtype == dtype and y.shape == (2, 5, 96)
    torch.testing.assert_close(y, x @ W.to(dtype) + ql.bias.to(dtype))
    torch.testing.assert_close(y.float(), x.float() @ W.float() + b.half().float(),
                               **({} if dtype == torch.float32 else dict(rtol=2e-2, atol=0.5)))
    # a state dict loads into a fresh layer and gives the same output
    ql2 = QuantLinear(320, 96, quant)
    ql2.load_state_dict(ql.state_dict())
    assert torch.equal(ql2(x), y)


def test_quantlinear_defaults_and_make_linear():
    quant = QuantConfig(bits=4, group_size=128)
    ql = QuantLinear(576, 192, quant)
    assert torch.equal(ql.bias, torch.zeros(192, dtype=torch.float16))
    assert torch.equal(ql.g_idx, (torch.arange(576) // 128).int()) and ql.scales.shape == (5, 192)
    lin = make_linear(64, 32, None, True, torch.float32, None)
    assert type(lin) is torch.nn.Linear and lin.bias is not None and lin.weight.dtype == torch.float32
    assert isinstance(make_linear(64, 32, quant, False, torch.bfloat16, None), QuantLinear)
    assert make_linear(64, 32, quant, False, torch.bfloat16, None).scales.dtype == torch.bfloat16
    x = torch.randn(3, 576, dtype=torch.float16)
    assert torch.equal(gptq_matmul_ref(x, ql.qweight, ql.qzeros, ql.scales, ql.g_idx, None, 4), ql(x))


@pytest.mark.parametrize('make, msg', [
    (lambda: QuantLinear(100, 64, QuantConfig(bits=3)), 'in_features=100'),
    (lambda: QuantLinear(64, 100, QuantConfig(bits=3)), 'out_features=100'),
    (lambda: QuantLinear(36, 64, QuantConfig(bits=4)), 'multiple of 8'),
    (lambda: QuantLinear(64, 64, QuantConfig(bits=5)), '2, 3, 4, 8'),
    (lambda: QuantLinear(64, 64, QuantConfig(bits=4, group_size=0)), 'group_size'),
    (lambda: quantize_rtn(torch.randn(64, 48), QuantConfig(bits=3)), 'in_features=48'),
    (lambda: pack_rows(torch.full((8, 1), 16), 4), '[0, 15]'),
    (lambda: pack_rows(torch.zeros(8, 1, dtype=torch.int32), 3), 'multiple of 32'),
    (lambda: unpack_cols(torch.zeros(2, 4, dtype=torch.int32), 3), 'qzeros of shape (2, 4)'),
    (lambda: unpack_rows(torch.zeros(2, 4, dtype=torch.int64), 4), 'int32'),
    (lambda: make_g_idx(8, QuantConfig(bits=4, group_size=2), torch.arange(8)), 'desc_act'),
])
def test_errors(make, msg):
    with pytest.raises(ValueError, match=None) as e: make()
    assert msg in str(e.value)


def test_config_errors_are_value_errors():
    with pytest.raises(ConfigError): QuantConfig.from_dict(dict(bits=5))


def _branches():
    d = fixture_path('codellama-70b-instruct-gptq')
    return json.loads((d / 'branches.json').read_text()).items()

@pytest.mark.parametrize('name, branch', list(_branches()))
def test_checkpoint_bytes_70b(name, branch):
    cfg = LlamaConfig.from_dict(json.loads(fixture_path('codellama-70b-instruct-gptq', 'config.json').read_text()))
    gb = checkpoint_bytes(cfg, QuantConfig.from_dict(branch['quantize_config.json'])) / 1e9   # the card's GB are 1e9 bytes
    assert abs(gb / branch['model_card_size_gb'] - 1) < 5e-3, (name, gb)


def test_linear_bytes_matches_tensors():
    for quant in (QuantConfig(bits=3, group_size=32), QuantConfig(bits=4, group_size=128), QuantConfig(bits=8)):
        ql = QuantLinear(576, 192, quant)
        assert linear_bytes(576, 192, quant) == sum(t.numel() * t.element_size() for t in ql.state_dict().values())


# ---- interop: GPTQModel's torch kernel reads what we write, and writes what we write ----
# GPTQModel (AutoGPTQ's successor) keeps zeros as v2 in memory: it converts a v1 checkpoint's qzeros on load
# with `convert_gptq_v1_to_v2_format_module`, then dequantizes with its torch reference path.

INTEROP = [(b, s, gs, act) for b in BITS for s in (True, False) for gs, act in [(-1, False), (32, True), (128, False), (64, True)]]

@pytest.fixture(scope='module')
def gptqmodel():
    qlin = pytest.importorskip('gptqmodel.nn_modules.qlinear.torch')
    conv = pytest.importorskip('gptqmodel.utils.model')
    return qlin.TorchLinear, conv.convert_gptq_v1_to_v2_format_module

@pytest.mark.parametrize('fmt', ['gptq', 'gptq_v2'])
@pytest.mark.parametrize('bits, sym, gs, act', INTEROP)
def test_gptqmodel_reads_ours(gptqmodel, bits, sym, gs, act, fmt):
    TorchLinear, v1_to_v2 = gptqmodel
    quant = QuantConfig(bits=bits, group_size=gs, sym=sym, desc_act=act, checkpoint_format=fmt)
    r = quantize_rtn(torch.randn(64, 256), quant, torch.randperm(256) if act else None)
    m = TorchLinear(bits=bits, group_size=gs, sym=sym, desc_act=act, in_features=256, out_features=64, bias=True)
    for k, v in r.items(): getattr(m, k).copy_(v)
    m.eval()
    if fmt == 'gptq': v1_to_v2(m, bits=bits, pack_dtype=torch.int32)
    with torch.no_grad(): theirs = m.dequantize_weight()                 # [in, out]
    assert torch.equal(theirs.to(torch.float16), dequantize(**r, bits=bits, v2=fmt == 'gptq_v2'))

@pytest.mark.parametrize('bits, sym, gs, act', INTEROP)
def test_gptqmodel_packs_like_us(gptqmodel, bits, sym, gs, act):
    TorchLinear, _ = gptqmodel
    quant = QuantConfig(bits=bits, group_size=gs, sym=sym, desc_act=act, checkpoint_format='gptq_v2')
    r = quantize_rtn(torch.randn(64, 256), quant, torch.randperm(256) if act else None)
    lin = torch.nn.Linear(256, 64, bias=False)
    lin.weight.data = dequantize(**r, bits=bits, v2=True).T.float().contiguous()   # exactly on the grid
    m = TorchLinear(bits=bits, group_size=gs, sym=sym, desc_act=act, in_features=256, out_features=64, bias=False)
    m.pack(lin, r['scales'].float().T, unpack_cols(r['qzeros'], bits).T.float(), r['g_idx'])  # its pack wants [out, G]
    assert torch.equal(m.qweight, r['qweight'])
    assert torch.equal(m.qzeros, r['qzeros'])
