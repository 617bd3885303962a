"Loading: peak host memory while streaming a >1 GB GPTQ checkpoint, hub resolution from a local cache."
import math
import pytest, torch
from qllama.config import QuantConfig, fixture_path
from qllama.load import save_checkpoint, tiny_config, resolve, info, read_header
from rss_probe import peak_rss

# A Llama-7B-wide GPTQ checkpoint (4-bit, 128g, act-order) of 8 layers: ~1.3 GB on disk.
CFG = tiny_config(hidden_size=4096, intermediate_size=11008, num_hidden_layers=8, num_attention_heads=32,
                  num_key_value_heads=8, max_position_embeddings=4096)
Q = QuantConfig(bits=4, group_size=128, desc_act=True)

def _random_gptq(n_in, n_out, g):
    "Random, well-formed GPTQ tensors of one linear (random packed words, positive scales, act-order g_idx)."
    G = Q.n_groups(n_in)
    return {'qweight': torch.randint(-2**31, 2**31 - 1, (n_in*Q.bits//32, n_out), dtype=torch.int32, generator=g),
            'qzeros': torch.full((G, n_out*Q.bits//32), 0x77777777, dtype=torch.int32),
            'scales': (torch.rand(G, n_out, generator=g) * 1e-2 + 1e-3).half(),
            'g_idx': (torch.randperm(n_in, generator=g) // Q.group_size).int(),
            'bias': torch.zeros(n_out, dtype=torch.float16)}

@pytest.fixture(scope='module')
def big_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('big')/'ck'
    g = torch.Generator().manual_seed(0)
    h, m, kvd = CFG['hidden_size'], CFG['intermediate_size'], 8*128
    shapes = dict(q_proj=(h, h), k_proj=(h, kvd), v_proj=(h, kvd), o_proj=(h, h), gate_proj=(h, m), up_proj=(h, m), down_proj=(m, h))
    t = {'model.embed_tokens.weight': torch.randn(CFG['vocab_size'], h, generator=g).half()*0.02,
         'lm_head.weight': torch.randn(CFG['vocab_size'], h, generator=g).half()*0.02,
         'model.norm.weight': torch.ones(h, dtype=torch.float16)}
    for i in range(CFG['num_hidden_layers']):
        for n, (a, b) in shapes.items():
            part = 'self_attn' if n[0] in 'qkvo' else 'mlp'
            t.update({f'model.layers.{i}.{part}.{n}.{k}': v for k, v in _random_gptq(a, b, g).items()})
        t[f'model.layers.{i}.input_layernorm.weight'] = torch.ones(h, dtype=torch.float16)
        t[f'model.layers.{i}.post_attention_layernorm.weight'] = torch.ones(h, dtype=torch.float16)
    save_checkpoint(path, t, CFG, Q, generation={'eos_token_id': 2})
    del t
    return path

SETUP = "import sys, torch"
LOAD = '''
    from qllama.load import Llama, ModelConfig, load_weights, weight_files
    mc = ModelConfig.from_dir(sys.argv[1])
    m = Llama(mc, dtype=torch.float16, device='cpu'); m.config = mc
    load_weights(m, weight_files(sys.argv[1]), progress=False)
    extra['model'] = sum(t.numel()*t.element_size() for t in m.state_dict().values())
'''

def test_streaming_peak_memory(big_checkpoint):
    "Peak anonymous memory while loading stays at the model's own size plus about one tensor, far below model + checkpoint."
    ck_bytes = sum(f.stat().st_size for f in big_checkpoint.glob('*.safetensors'))
    assert ck_bytes > 1e9
    r = peak_rss(SETUP, LOAD, big_checkpoint)
    largest = max(math.prod(s)*(2 if dt in ("F16", "BF16") else 4) for dt, s in read_header(big_checkpoint/"model.safetensors").values())
    overhead = r['peak'] - r['base'] - r['model']
    print(f"\ncheckpoint {ck_bytes/2**30:.2f} GiB, model in memory {r['model']/2**30:.2f} GiB, "
          f"peak anon RSS over start {(r['peak']-r['base'])/2**30:.2f} GiB, transient overhead {overhead/2**20:.0f} MiB "
          f"(largest tensor {largest/2**20:.0f} MiB)")
    assert overhead < 0.25 * ck_bytes, "loading buffered far more than one tensor at a time"

def test_info_on_big(big_checkpoint):
    i = info(big_checkpoint, context=4096, batch=2)
    assert i['tensors'] == 3 + 8*(7*5 + 2)
    assert i['kv_cache_bytes'] == 2*8*8*128*4096*2*2

def test_hub_offline_cache(tmp_path, monkeypatch):
    "repo:branch resolves through huggingface_hub from its cache when the hub is unreachable (HF_HUB_OFFLINE too)."
    d = tmp_path/'models--TheBloke--CodeLlama-70B-Instruct-GPTQ'
    (d/'refs').mkdir(parents=True); (d/'refs'/'gptq-4bit-32g-actorder_True').write_text('c0ffee')
    snap = d/'snapshots'/'c0ffee'; snap.mkdir(parents=True)
    for f in fixture_path('codellama-70b').iterdir(): (snap/f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    p = resolve('TheBloke/CodeLlama-70B-Instruct-GPTQ:gptq-4bit-32g-actorder_True', cache_dir=tmp_path)
    assert p == snap and (p/'tokenizer.model').exists()
    with pytest.raises(Exception):
        resolve('TheBloke/CodeLlama-70B-Instruct-GPTQ:gptq-3bit-32g-actorder_True', cache_dir=tmp_path)
