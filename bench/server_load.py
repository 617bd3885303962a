"""Load benchmark of `qllama serve`: concurrent streaming clients against the continuous-batching engine.

From the repository root:

    python bench/server_load.py                                   # CPU: the SmolLM2 demo, 64 clients, through HTTP
    python bench/server_load.py --model random-70b --device cuda --clients 16 --no-http   # GPU: 70B-shaped random GPTQ

It measures, on one server (or engine):
1. the single-client rate: one streaming client, requests one after another (decode tokens/s after the first token);
2. the load: `--clients` concurrent streaming clients, `--requests` requests each, greedy, prompts in rotation;
   aggregate generated tokens/s over the wall time, per-request latency and time to first token (p50/p99);
3. the checks: every request completes, greedy outputs equal the sequential runs, the KV cache is empty afterwards.
With `--no-http` the clients are threads submitting to the `Engine` directly (for a machine without the HTTP stack);
otherwise they are `huggingface_hub.InferenceClient`s streaming from `/generate_stream` on 127.0.0.1.
A JSON record with the device's name goes to stdout and, with `--out`, to a file.
"""
import argparse, json, platform, statistics, threading, time
from concurrent.futures import ThreadPoolExecutor
import torch
from qllama.config import ModelConfig, fixture_path
from qllama.engine import Engine, Result
from qllama.generate import SamplingParams
from qllama.gptq import QuantLinear
from qllama.load import load
from qllama.model import Llama
from qllama.tokenizer import Tokenizer

PROMPTS = ['The capital of France is', 'def fibonacci(n):', 'Once upon a time, there was a', '1, 2, 3, 4,',
           'import numpy as np\n', 'The best way to learn a language is', 'SELECT * FROM', 'Dear Sir or Madam,']

def random_70b(device) -> Llama:
    "CodeLlama-70B-Instruct-GPTQ's shapes (4-bit act-order, no group) with random packed weights, built on `device`."
    cfg = ModelConfig.from_dir(fixture_path('codellama-70b-instruct-gptq'))
    m = Llama(cfg, dtype=torch.float16, device=device)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, QuantLinear):
                mod.qweight.copy_(torch.randint(-2**31, 2**31 - 1, mod.qweight.shape, dtype=torch.int32, device=device))
                mod.qzeros.fill_(0x77777777)                            # zero point 8 in every 4-bit field
                mod.scales.copy_(torch.rand_like(mod.scales) * 2e-3 + 1e-3)
        m.model.embed_tokens.weight.normal_(0, 0.02); m.lm_head.weight.normal_(0, 0.02)
    m.tokenizer = Tokenizer.from_dir(fixture_path('codellama-70b'))
    return m.eval()

def pct(xs, q): return sorted(xs)[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]

class EngineClient:
    "A streaming client that talks to the engine directly: (text, latency, time to first token, token times)."
    def __init__(self, engine, tok, n): self.engine, self.tok, self.n = engine, tok, n
    def __call__(self, prompt):
        done, times, res = threading.Event(), [], []
        def sink(ev):
            if isinstance(ev, Result): res.append(ev); done.set()
            else: times.append(time.monotonic())
        t = time.monotonic()
        self.engine.submit(self.tok.encode(prompt, bos=True), SamplingParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=self.n), sink)
        done.wait()
        assert res[0].finish_reason in ('length', 'eos_token', 'stop_sequence'), res[0]
        return res[0].text, time.monotonic() - t, times[0] - t, times

class HttpClient:
    "A streaming `InferenceClient` on `/generate_stream`."
    def __init__(self, url, n): self.url, self.n = url, n
    def __call__(self, prompt):
        from huggingface_hub import InferenceClient
        t, times, text = time.monotonic(), [], ''
        c = InferenceClient(base_url=self.url, timeout=3600)   # kept alive: the client owns the open stream
        for piece in c.text_generation(prompt, max_new_tokens=self.n, stream=True):
            times.append(time.monotonic()); text += piece
        return text, time.monotonic() - t, times[0] - t, times

def measure(client, prompts, clients, requests):
    "Single-client rate, then `clients` concurrent clients; the numbers and the checks."
    seq = {p: client(p) for p in prompts}                                        # one request at a time
    single = [(len(v[3]) - 1) / (v[3][-1] - v[3][0]) for v in seq.values() if len(v[3]) > 1]
    jobs = [prompts[(c + r) % len(prompts)] for c in range(clients) for r in range(requests)]
    t = time.monotonic()
    with ThreadPoolExecutor(clients) as ex: out = list(ex.map(client, jobs))
    wall = time.monotonic() - t
    tokens = sum(len(o[3]) for o in out)
    return dict(single_client_decode_tok_s=statistics.median(single), requests=len(jobs), generated_tokens=tokens, wall_s=wall,
                aggregate_tok_s=tokens / wall, latency_p50_s=pct([o[1] for o in out], 50), latency_p99_s=pct([o[1] for o in out], 99),
                ttft_p50_s=pct([o[2] for o in out], 50), ttft_p99_s=pct([o[2] for o in out], 99),
                all_completed=len(out) == len(jobs), greedy_equal_sequential=all(o[0] == seq[p][0] for o, p in zip(out, jobs)))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='smollm2-demo', help="a model directory, smollm2-demo, or random-70b")
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--clients', type=int, default=64)
    ap.add_argument('--requests', type=int, default=1, help="requests per client")
    ap.add_argument('--prompts', type=int, default=4, help="distinct prompts, in rotation over the clients")
    ap.add_argument('--max-new-tokens', type=int, default=16)
    ap.add_argument('--max-total-tokens', type=int, default=128)
    ap.add_argument('--no-http', action='store_true', help="clients submit to the engine directly")
    ap.add_argument('--out', help="also write the JSON record here")
    a = ap.parse_args()
    model = random_70b(a.device) if a.model == 'random-70b' else load(a.model, device=a.device, progress=False)
    engine = Engine(model, max_batch=a.clients, max_total_tokens=a.max_total_tokens, max_batch_prefill_tokens=4096)
    prompts = PROMPTS[:min(a.prompts, len(PROMPTS), a.clients)]
    card = torch.cuda.get_device_name() if a.device.startswith('cuda') else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    if a.no_http:
        engine.start()
        r = measure(EngineClient(engine, model.tokenizer, a.max_new_tokens), prompts, a.clients, a.requests)
        engine.stop()
    else:
        from qllama.server import Limits, ServerThread, create_app
        lim = Limits(max_input_length=a.max_total_tokens // 2, max_total_tokens=a.max_total_tokens, max_concurrent_requests=max(128, a.clients))
        with ServerThread(create_app(engine, a.model, lim)) as s: r = measure(HttpClient(s.url, a.max_new_tokens), prompts, a.clients, a.requests)
    st = engine.stats()
    r = dict(card=card, model=a.model, transport='engine' if a.no_http else 'http', clients=a.clients, max_new_tokens=a.max_new_tokens,
             **r, speedup_vs_single=r['aggregate_tok_s'] / r['single_client_decode_tok_s'], kv_slots_used_after=st['slots_used'],
             kv_tokens_after=st['kv_tokens'], engine_steps=st['steps'])
    print(json.dumps(r, indent=2))
    if a.out: open(a.out, 'w').write(json.dumps(r, indent=2))
    ok = r['all_completed'] and r['greedy_equal_sequential'] and not r['kv_slots_used_after'] and not r['kv_tokens_after']
    raise SystemExit(0 if ok else 1)

if __name__ == '__main__': main()
