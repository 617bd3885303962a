"""The GPTQ quantizer end to end (nbs/18_quantize.ipynb): every setting through the whole pipeline, sharded output,
peak memory while streaming the source, and an independent reader (GPTQModel) loading a qllama-made checkpoint."""
import json, math, os
from pathlib import Path
import pytest, torch
from qllama.config import ModelConfig, QuantConfig, fixture_path
from qllama.load import load, random_checkpoint, tiny_config, read_header
from qllama.perplexity import perplexity, stdlib_glob, text_files
from qllama.quantize import quantize, calibration_windows, gptq_quantize, Hessian
from rss_probe import peak_rss

TOK = fixture_path('chatml')   # a 400-token BPE tokenizer.json: small models with a real tokenizer
CFG = tiny_config(vocab_size=512, max_position_embeddings=256)

@pytest.fixture(scope='module')
def fp(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp('fp')/'fp', CFG, None, tokenizer_from=TOK)

@pytest.fixture(scope='module')
def windows(fp):
    tok = load(fp, progress=False).tokenizer
    return calibration_windows(tok, text_files(stdlib_glob()), 4, 64, seed=123).clamp(max=CFG['vocab_size'] - 1)

def logits(path, ids, **kw):
    with torch.no_grad(): return load(path, progress=False, **kw)(ids)

SETTINGS = [dict(bits=4, group_size=128, desc_act=True), dict(bits=4, group_size=32, desc_act=False),
            dict(bits=3, group_size=64, desc_act=True, sym=False), dict(bits=2, group_size=32, desc_act=True),
            dict(bits=8, group_size=-1), dict(bits=4, group_size=32, desc_act=True, static_groups=True),
            dict(bits=4, group_size=32, desc_act=True, sym=False, checkpoint_format='gptq_v2'),
            dict(bits=4, group_size=32, desc_act=True, true_sequential=False)]

@pytest.mark.parametrize('s', SETTINGS, ids=lambda s: '-'.join(f'{k}={v}' for k, v in s.items()))
def test_settings_end_to_end(fp, windows, tmp_path, s):
    "Every setting writes a checkpoint qllama loads with the same settings, its logits near the float model's."
    q = QuantConfig(**s)
    out = quantize(fp, tmp_path/'q', q, nsamples=8, seqlen=64, progress=False)
    mc = ModelConfig.from_dir(out)
    assert mc.quant == q
    assert json.loads((out/'quantize_config.json').read_text()) == q.to_dict()
    lf, lq = logits(fp, windows), logits(out, windows)
    err = ((lq - lf).norm() / lf.norm()).item()
    bound = {2: 0.9, 3: 0.35, 4: 0.2, 8: 0.02}[q.bits]
    assert err < bound, f"relative logit error {err:.3f} at {q.bits} bits"

def test_reproducible_and_sharded(fp, windows, tmp_path):
    "Same seed, same bytes; a small shard size gives an index and the same model."
    q = QuantConfig(bits=4, group_size=32, desc_act=True)
    a = quantize(fp, tmp_path/'a', q, nsamples=4, seqlen=64, seed=7, progress=False)
    b = quantize(fp, tmp_path/'b', q, nsamples=4, seqlen=64, seed=7, progress=False, shard_bytes=100_000)
    assert len(list(b.glob('model-*-of-*.safetensors'))) > 2 and (b/'model.safetensors.index.json').exists()
    torch.testing.assert_close(logits(a, windows), logits(b, windows), rtol=0, atol=0)
    c = quantize(fp, tmp_path/'c', q, nsamples=4, seqlen=64, seed=8, progress=False)
    assert not torch.equal(logits(a, windows), logits(c, windows))

def test_windows_instead_of_dataset(fp, tmp_path):
    "Calibration token windows passed as `windows=` give the same checkpoint as the text they were read from."
    q = QuantConfig(bits=4, group_size=32, desc_act=True)
    a = quantize(fp, tmp_path/'a', q, nsamples=4, seqlen=64, seed=7, progress=False)
    ids = calibration_windows(load(fp, progress=False).tokenizer, text_files(stdlib_glob()), 4, 64, seed=7)
    b = quantize(fp, tmp_path/'b', q, windows=ids, progress=False)
    assert (a/'model.safetensors').read_bytes() == (b/'model.safetensors').read_bytes()
    with pytest.raises(ValueError, match='windows must be'): quantize(fp, tmp_path/'c', q, windows=ids[0], progress=False)

def test_gptq_beats_rtn_on_perplexity(fp, tmp_path):
    "On held-out code, a model quantized with GPTQ loses less perplexity than round-to-nearest at the same settings."
    from qllama.gptq import quantize_rtn, dequantize
    from qllama.perplexity import read_tokens, token_windows
    q = QuantConfig(bits=3, group_size=32, desc_act=True)
    out = quantize(fp, tmp_path/'q', q, dataset=str(Path(stdlib_glob()).parent/'[a-m]*.py'), nsamples=16, seqlen=128, progress=False)
    mf = load(fp, progress=False)
    ev = token_windows(read_tokens(mf.tokenizer, text_files(str(Path(stdlib_glob()).parent/'[n-z]*.py')), 8*128), 128, 8)
    ev = ev.clamp(max=CFG['vocab_size'] - 1)
    mr = load(fp, progress=False)
    for n, m in mr.named_modules():
        if isinstance(m, torch.nn.Linear) and '.layers.' in n:
            p = quantize_rtn(m.weight, q)
            with torch.no_grad(): m.weight.copy_(dequantize(**p, bits=3).T)
    pf, pg, pr = (perplexity(m, ev, progress=False)['nll'] for m in (mf, load(out, progress=False), mr))
    assert pg - pf < 0.7 * (pr - pf), (pf, pg, pr)

def test_lazy_blocks_same_integers():
    "The lazy-block column loop gives the same integers for any block size (no groups), on a 300-wide layer."
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 300, generator=g) @ torch.randn(300, 300, generator=g)
    h = Hessian(300); h.add(X)
    w = torch.randn(64, 300, generator=g)
    q = QuantConfig(bits=4, group_size=-1, desc_act=True)
    r1, r2 = gptq_quantize(w, h.H, q, blocksize=128), gptq_quantize(w, h.H, q, blocksize=300)
    assert (r1['q'] != r2['q']).float().mean() < 1e-3  # fp32 reassociation may flip a rare exact tie

def test_fp32_scales_in_loop_stored_as_nearest_fp16():
    "The column loop keeps fp32 scales; the packed tensors hold the loop's integers and zeros with the nearest fp16 scales."
    from qllama.gptq import dequantize, unpack_cols, unpack_rows
    from qllama.quantize import dequant, gptq_pack
    g = torch.Generator().manual_seed(1)
    h = Hessian(256); h.add(torch.randn(2000, 256, generator=g) @ torch.randn(256, 256, generator=g))
    w = torch.randn(96, 256, generator=g) * 0.02
    for q in (QuantConfig(bits=3, group_size=64, desc_act=True), QuantConfig(bits=4, group_size=32, sym=False)):
        r = gptq_quantize(w, h.H, q)
        assert (r['scales'].half().float() != r['scales']).float().mean() > 0.5   # not fp16-exact: fp32 in the loop
        p = gptq_pack(r, q)
        assert torch.equal(p['scales'], r['scales'].half())                       # round to nearest, once, when packed
        assert torch.equal(unpack_rows(p['qweight'], q.bits), r['q'].T)
        assert torch.equal(unpack_cols(p['qzeros'], q.bits) + 1, r['zeros'])
        back = dequantize(p['qweight'], p['qzeros'], p['scales'].float(), p['g_idx'], q.bits)   # [in, out] fp32
        torch.testing.assert_close(back.T, dequant(r), rtol=0, atol=0)            # `dequant` is the weight as stored

# ---- memory: the source is streamed one tensor at a time ----
def big(layers): return tiny_config(vocab_size=512, hidden_size=512, intermediate_size=2048, num_hidden_layers=layers,
                                    num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256)

SETUP = """
    import sys, torch
    from qllama.config import QuantConfig
    from qllama.quantize import quantize
"""
QUANTIZE = """
    quantize(sys.argv[1], sys.argv[2], QuantConfig(bits=4, group_size=128, desc_act=True), nsamples=4, seqlen=128,
             shard_bytes=4 * 2**20, progress=False)
"""

def test_streaming_peak_memory(tmp_path):
    "Peak memory does not grow with the number of layers: 16 layers cost what 4 do, so a 70B never has to fit at once."
    over, size = {}, {}
    for n in (4, 16):
        src = random_checkpoint(tmp_path/f'src{n}', big(n), None, tokenizer_from=TOK)
        size[n] = 4 * sum(math.prod(s) for _, s in read_header(src/'model.safetensors').values())  # bytes in fp32
        r = peak_rss(SETUP, QUANTIZE, src, tmp_path/f'q{n}')
        over[n] = r['peak'] - r['base']
        print(f"\n{n} layers: source {size[n]/2**20:.0f} MiB in fp32, peak anon RSS over start {over[n]/2**20:.0f} MiB")
        assert len(list((tmp_path/f'q{n}').glob('model-*.safetensors'))) > 1
    # holding the model would grow the peak by the whole difference (100%); heap noise alone has reached ~30% here
    assert over[16] - over[4] < 0.5 * (size[16] - size[4]), "peak memory grew with the model: layers are not streamed"

# ---- an independent reader: GPTQModel loads what qllama writes ----
@pytest.fixture(scope='module')
def gptqmodel():
    os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2')   # its CPU thread pool refuses fewer on small machines
    return pytest.importorskip('gptqmodel')

# GPTQModel refuses asymmetric v1 ('gptq') checkpoints unless it wrote them itself (AutoGPTQ's old zero-minus-one
# overflow), so the asymmetric case is written as gptq_v2, the format GPTQModel itself uses for sym=False.
@pytest.mark.parametrize('s', [dict(bits=4, group_size=32, desc_act=True),
                               dict(bits=3, group_size=64, desc_act=True, sym=False, checkpoint_format='gptq_v2')],
                         ids=['4bit-32g-act', '3bit-64g-act-asym-v2'])
def test_gptqmodel_loads_qllama_checkpoint(gptqmodel, fp, windows, tmp_path, s):
    "GPTQModel (torch kernel, fp16) loads a qllama-made checkpoint as a Llama and gives qllama's logits."
    out = quantize(fp, tmp_path/'q', QuantConfig(**s), nsamples=4, seqlen=64, progress=False)
    gm = gptqmodel.GPTQModel.load(str(out), device='cpu', backend=gptqmodel.BACKEND.TORCH, dtype=torch.float16)
    with torch.no_grad(): lg = gm.model(input_ids=windows).logits.float()
    lq, lf = logits(out, windows), logits(fp, windows)
    scale = lq.abs().max()
    assert (lg - lq).abs().max() < 0.02 * scale, "GPTQModel reads different weights than qllama wrote"
    assert (lf - lq).abs().max() > 5 * (lg - lq).abs().max(), "the comparison cannot tell quantized from float weights"

def test_qllama_loads_gptqmodel_checkpoint(gptqmodel, windows, tmp_path):
    "qllama loads a GPTQModel-made checkpoint (transformers 5's config.json: rope_theta inside rope_parameters) with GPTQModel's logits."
    src = random_checkpoint(tmp_path/'fp', CFG | dict(rope_theta=50000.0), None, tokenizer_from=TOK)  # not the default base
    q = gptqmodel.QuantizeConfig(bits=4, group_size=32, desc_act=True, sym=True, damp_percent=0.01)
    gm = gptqmodel.GPTQModel.load(str(src), q, device='cpu', dtype=torch.float32)
    gm.quantize([{'input_ids': w.tolist(), 'attention_mask': [1] * len(w)} for w in windows], batch_size=4)
    gm.save(str(tmp_path/'gm'))
    cfg = json.loads((tmp_path/'gm'/'config.json').read_text())
    assert ModelConfig.from_dir(tmp_path/'gm').llama.rope_theta == 50000.0, cfg.get('rope_parameters')
    back = gptqmodel.GPTQModel.load(str(tmp_path/'gm'), device='cpu', backend=gptqmodel.BACKEND.TORCH, dtype=torch.float16)
    with torch.no_grad(): lg = back.model(input_ids=windows).logits.float()
    lq, lf = logits(tmp_path/'gm', windows), logits(src, windows)
    assert (lg - lq).abs().max() < 0.02 * lq.abs().max(), "qllama reads a GPTQModel checkpoint differently from GPTQModel"
    assert (lf - lq).abs().max() > 5 * (lg - lq).abs().max(), "the comparison cannot tell quantized from float weights"
