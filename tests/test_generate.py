"Generation against transformers: every logits processor, and whole greedy and seeded generations of a tiny random Llama."
import math
from dataclasses import replace
import pytest, torch
from transformers import LlamaConfig as HFLlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
from qllama.config import ModelConfig, fixture_path
from qllama.model import Llama
from qllama.tokenizer import Tokenizer
from qllama.generate import (SamplingParams, Completion, seen_mask, apply_repetition_penalty, apply_temperature,
                             apply_top_k, apply_top_p, process_logits, generate)

exact = dict(rtol=0, atol=0)

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "The models here are tiny: one thread beats two (and does not fight other CI jobs for the cores)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def _logits(B, V, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * scale, g

# ---- logits processors, bit for bit against transformers' classes ----

@pytest.mark.parametrize('penalty', [0.5, 1.1, 1.3, 2.0])
@pytest.mark.parametrize('B,V,L', [(1, 7, 3), (4, 100, 20), (3, 32016, 300)])
def test_repetition_penalty(penalty, B, V, L):
    logits, g = _logits(B, V, L)
    ids = torch.randint(0, V, (B, L), generator=g)
    ref = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    torch.testing.assert_close(apply_repetition_penalty(logits, seen_mask(ids.tolist(), V), penalty), ref, **exact)

@pytest.mark.parametrize('t', [0.1, 0.7, 1.0, 1.7])
def test_temperature(t):
    logits, _ = _logits(4, 1000, 1)
    torch.testing.assert_close(apply_temperature(logits, t), TemperatureLogitsWarper(t)(None, logits.clone()), **exact)

@pytest.mark.parametrize('k', [1, 2, 40, 999, 1000, 5000])
def test_top_k(k):
    logits, _ = _logits(4, 1000, 2)
    logits[1, :10] = 1.5  # ties
    torch.testing.assert_close(apply_top_k(logits, k), TopKLogitsWarper(k)(None, logits.clone()), **exact)

@pytest.mark.parametrize('p', [1e-6, 0.1, 0.5, 0.9, 0.95, 0.999999, 1.0])
@pytest.mark.parametrize('scale', [0.1, 3.0, 20.0])
def test_top_p(p, scale):
    logits, _ = _logits(5, 1000, 3, scale)
    torch.testing.assert_close(apply_top_p(logits, p), TopPLogitsWarper(p)(None, logits.clone()), **exact)

@pytest.mark.parametrize('do_sample,t,k,p,rp', [(False, 1.0, 0, 1.0, 1.0), (False, 0.7, 40, 0.95, 1.1),
                                                (True, 0.7, 40, 0.95, 1.1), (True, 1.3, 0, 0.5, 1.0),
                                                (True, 1.0, 5, 1.0, 2.0), (True, 0.5, 0, 1.0, 1.0)])
def test_process_logits_chain(do_sample, t, k, p, rp):
    "The whole chain in transformers' order: repetition penalty, then temperature, top-k, top-p when sampling."
    logits, g = _logits(3, 2000, 4)
    ids = torch.randint(0, 2000, (3, 50), generator=g)
    procs = [RepetitionPenaltyLogitsProcessor(rp)] if rp != 1.0 else []
    if do_sample:
        if t != 1.0: procs.append(TemperatureLogitsWarper(t))
        if k: procs.append(TopKLogitsWarper(k))
        if p < 1.0: procs.append(TopPLogitsWarper(p))
    ref = LogitsProcessorList(procs)(ids, logits.clone())
    params = SamplingParams(do_sample=do_sample, temperature=t, top_k=k, top_p=p, repetition_penalty=rp)
    torch.testing.assert_close(process_logits(logits, seen_mask(ids.tolist(), 2000), params), ref, **exact)

# ---- whole generations against LlamaForCausalLM ----

@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    "A tiny random LlamaForCausalLM (fp32) and the qllama Llama with the same weights, read through its config.json."
    torch.manual_seed(0)
    hcfg = HFLlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                         rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    hf = LlamaForCausalLM(hcfg).float().eval()
    with torch.no_grad():  # weights large enough that the logits are far from ties
        for n, w in hf.named_parameters():
            if n.endswith('norm.weight'): w.uniform_(0.5, 1.5)
            elif w.ndim == 2: w.normal_(0, 1.0 if 'embed' in n else 1 / math.sqrt(w.shape[1]))
    d = tmp_path_factory.mktemp('tiny')
    hf.save_pretrained(d)
    cfg = ModelConfig.from_dir(d)
    ours = Llama(cfg, dtype=torch.float32).eval()
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not unexpected and all('rotary' in k or 'rope' in k or 'inv_freq' in k for k in missing), (missing, unexpected)
    return hf, ours

PROMPTS = [[1, 45, 300, 7], [1, 9], [1, 100, 200, 300, 400, 500, 17, 3, 90, 91, 92, 5], [1]]

def _hf_new_ids(hf, prompt, **kw):
    out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                      pad_token_id=0, **kw)
    return out[0, len(prompt):].tolist()

@pytest.mark.parametrize('rp', [1.0, 1.3])
def test_greedy_matches_transformers(pair, rp):
    hf, ours = pair
    params = SamplingParams(do_sample=False, repetition_penalty=rp, max_new_tokens=24)
    for p in PROMPTS:
        ref = _hf_new_ids(hf, p, do_sample=False, repetition_penalty=rp, max_new_tokens=24)
        c = generate(ours, [p], params)[0]
        assert c.ids == ref, (p, c.ids, ref)
        assert c.finish_reason == ('stop' if ref[-1] == 2 else 'length')
        assert c.prompt_tokens == len(p)

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_seeded_sampling_matches_transformers(pair, seed):
    "With the global RNG seeded as our generator, transformers draws the same tokens: same distribution, same draw."
    hf, ours = pair
    kw = dict(temperature=0.7, top_k=40, top_p=0.95, repetition_penalty=1.1, max_new_tokens=20)
    p = PROMPTS[0]
    torch.manual_seed(seed)
    ref = _hf_new_ids(hf, p, do_sample=True, **kw)
    got = generate(ours, [p], SamplingParams(do_sample=True, seed=seed, **kw))[0].ids
    assert got == ref

def test_batch_equals_alone(pair):
    "A ragged batch (4 prompts, lengths 1 to 12) decodes each row exactly as alone (greedy)."
    _, ours = pair
    for rp in (1.0, 1.2):
        params = SamplingParams(do_sample=False, repetition_penalty=rp, max_new_tokens=30)
        together = generate(ours, PROMPTS, params)
        alone = [generate(ours, [p], params)[0] for p in PROMPTS]
        assert [c.ids for c in together] == [c.ids for c in alone]

def test_batch_rows_finish_independently(pair):
    "Rows that hit a stop id leave the batch; the others carry on unchanged."
    _, ours = pair
    params = SamplingParams(do_sample=False, max_new_tokens=30)
    free = generate(ours, PROMPTS, params)
    stop = free[0].ids[2]
    ours.config.generation.eos_token_ids = [stop]
    try: stopped = generate(ours, PROMPTS, params)
    finally: ours.config.generation.eos_token_ids = [2]
    for f, s in zip(free, stopped):
        n = f.ids.index(stop) + 1 if stop in f.ids else len(f.ids)
        assert s.ids == f.ids[:n]
        assert s.finish_reason == ('stop' if stop in f.ids else 'length')
    assert stopped[0].ids == free[0].ids[:3] and stopped[0].finish_reason == 'stop'

def test_seeded_sampling_reproducible(pair):
    _, ours = pair
    params = SamplingParams(seed=123, temperature=1.0, max_new_tokens=16)
    a, b = generate(ours, PROMPTS, params), generate(ours, PROMPTS, params)
    assert [c.ids for c in a] == [c.ids for c in b]
    c = generate(ours, PROMPTS, SamplingParams(seed=124, temperature=1.0, max_new_tokens=16))
    assert [x.ids for x in a] != [x.ids for x in c]

def test_context_limits(pair):
    _, ours = pair
    ctx = ours.config.llama.max_position_embeddings
    c = generate(ours, [[1] * (ctx - 3)], SamplingParams(do_sample=False, max_new_tokens=50))[0]
    assert len(c.ids) <= 3 and (c.finish_reason == 'length') == (len(c.ids) == 3)
    with pytest.raises(ValueError, match='max_position_embeddings'): generate(ours, [[1] * ctx], SamplingParams())
    with pytest.raises(ValueError, match='max_position_embeddings'): generate(ours, [[1], [1] * (ctx + 5)], SamplingParams())
    with pytest.raises(ValueError, match='stop strings need a tokenizer'): generate(ours, [[1]], SamplingParams(stop=['x']))

# ---- text: streaming, stop strings, stop ids, with the Llama-2 tokenizer ----

@pytest.fixture(scope='module')
def talker():
    "Code Llama 70B Instruct's config and tokenizer on a tiny random fp32 model."
    cfg = ModelConfig.from_dir(fixture_path('codellama-70b'))
    cfg.llama = replace(cfg.llama, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
    cfg.quant = None
    torch.manual_seed(1)
    m = Llama(cfg, dtype=torch.float32).eval()
    m.tokenizer = Tokenizer.from_dir(fixture_path('codellama-70b'))
    return m

def _continues(tok, prompt, c):
    "The completion's text is what the completion's ids add to the prompt's decoding."
    return tok.decode(prompt) + c.text == tok.decode(prompt + c.ids)

TEXTS = ['def fib(n):', 'Hello, world', 'Ünïcödé ✓ 日本語 — emoji 🦙']

def test_callback_concatenation_is_text(talker):
    for seed in range(4):
        pieces = {}
        outs = talker.generate(TEXTS, callback=lambda r, t: pieces.__setitem__(r, pieces.get(r, '') + t),
                               temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=40, seed=seed)
        for r, c in enumerate(outs):
            assert pieces.get(r, '') == c.text
            assert _continues(talker.tokenizer, talker.tokenizer.encode(TEXTS[r], bos=True), c)

def test_stop_strings(talker):
    "Every stop string cut from a free completion ends the text just before its first occurrence, also mid-token."
    params = dict(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=40, seed=7)
    free = talker.generate(TEXTS[0], **params)
    assert len(free.text) > 20
    for a, n in [(3, 1), (4, 2), (10, 5), (15, 3), (1, 8)]:
        stop = free.text[a:a + n]
        pieces = []
        c = talker.generate(TEXTS[0], callback=lambda r, t: pieces.append(t), stop=[stop, 'never appears ~~'], **params)
        assert c.text == free.text[:free.text.find(stop)]
        assert c.finish_reason == 'stop'
        assert ''.join(pieces) == c.text and all(stop not in p for p in pieces)
        assert c.ids == free.ids[:len(c.ids)]

def test_stop_ids(talker):
    params = dict(do_sample=False, repetition_penalty=1.3, max_new_tokens=30)
    free = talker.generate(TEXTS[1], **params)
    stop, eos = free.ids[5], talker.config.generation.eos_token_ids
    talker.config.generation.eos_token_ids = [stop]
    try: c = talker.generate(TEXTS[1], **params)
    finally: talker.config.generation.eos_token_ids = eos
    k = free.ids.index(stop)
    assert c.ids == free.ids[:k + 1] and c.finish_reason == 'stop'
    assert _continues(talker.tokenizer, talker.tokenizer.encode(TEXTS[1], bos=True), replace(c, ids=free.ids[:k]))

def test_llama_generate_forms(talker):
    kw = dict(do_sample=False, max_new_tokens=6)
    ids = talker.tokenizer.encode(TEXTS[0], bos=True)
    one = talker.generate(TEXTS[0], **kw)
    assert isinstance(one, Completion) and one.prompt_tokens == len(ids)
    assert talker.generate(ids, **kw) == one
    batch = talker.generate([TEXTS[0], ids, TEXTS[1]], **kw)
    assert isinstance(batch, list) and batch[0] == one and batch[1] == one
    with pytest.raises(ValueError, match='temperature'): talker.generate(TEXTS[0], temperature=0.0)
    with pytest.raises(TypeError): talker.generate(TEXTS[0], nucleus=0.3)

def test_step_ends_the_turn(talker):
    "Code Llama 70B ends its turn with <step>: the tokenizer's stop ids include it besides eos."
    step = talker.tokenizer.token_id('<step>')
    assert step == 32015 and {2, step} <= set(talker.tokenizer.stop_ids)
    def favour_step(mod, inp, out):  # make <step> the certain next token
        out = out.clone(); out[..., step] += 1000.0
        return out
    h = talker.lm_head.register_forward_hook(favour_step)
    try: c = talker.chat([{'role': 'user', 'content': 'hi'}], do_sample=False, max_new_tokens=10)
    finally: h.remove()
    assert c.ids == [step] and c.finish_reason == 'stop' and c.text == ''
