"The server with real clients on the SmolLM2 demo (CPU, loopback): huggingface_hub's InferenceClient as the model card calls it, the openai client, greedy equality with the CLI, 64 concurrent streaming clients, and faults."
import json, socket, threading, time
from concurrent.futures import ThreadPoolExecutor
import pytest, torch
from qllama.cli import run as cli_run
from qllama.engine import Engine
from qllama.load import load
from qllama.server import Limits, ServerThread, create_app
from huggingface_hub.errors import TextGenerationError, ValidationError

hub = pytest.importorskip('huggingface_hub')
openai = pytest.importorskip('openai')

PROMPTS = ['The capital of France is', 'def fibonacci(n):', 'Once upon a time, there was a', '1, 2, 3, 4,']
CARD = dict(do_sample=True, temperature=0.7, top_p=0.95, top_k=40, repetition_penalty=1.1)  # the model card's call
N = 4  # new tokens per request: every forward of the 135M GPTQ model on 2 shared cores counts

@pytest.fixture(scope='module')
def model(): return load('smollm2-demo', progress=False)

@pytest.fixture(scope='module')
def server(model):
    engine = Engine(model, max_batch=64, max_total_tokens=128, max_batch_prefill_tokens=1024)
    lim = Limits(max_input_length=96, max_total_tokens=128, max_batch_prefill_tokens=1024, max_concurrent_requests=128, payload_limit=100_000)
    with ServerThread(create_app(engine, 'smollm2-demo', lim)) as s:
        s.engine = engine
        yield s

def idle(engine, timeout=120):
    "Wait until the engine holds no request and no KV cache; its stats."
    t = time.monotonic()
    while (st := engine.stats())['slots_used'] or st['kv_tokens'] or st['running'] or st['waiting']:
        assert time.monotonic() - t < timeout, st
        time.sleep(0.05)
    return st

def test_inference_client_card_call(server):
    "The model card's `text_generation` call, streamed and not, with and without details."
    c = hub.InferenceClient(base_url=server.url, timeout=300)
    text = c.text_generation(PROMPTS[0], max_new_tokens=N, seed=7, **CARD)
    assert isinstance(text, str) and text
    streamed = list(c.text_generation(PROMPTS[0], max_new_tokens=N, seed=7, stream=True, **CARD))
    assert ''.join(streamed) == text and len(streamed) == N       # one event per token, same seed, same text
    d = c.text_generation(PROMPTS[0], max_new_tokens=N, seed=7, details=True, **CARD)
    assert d.generated_text == text and d.details.finish_reason == 'length' and d.details.generated_tokens == N
    assert d.details.seed == 7 and len(d.details.tokens) == N and all(t.logprob <= 0 for t in d.details.tokens)
    evs = list(c.text_generation(PROMPTS[0], max_new_tokens=N, seed=7, stream=True, details=True, **CARD))
    assert [e.token.id for e in evs] == [t.id for t in d.details.tokens]
    assert evs[-1].generated_text == text and evs[-1].details.generated_tokens == N and evs[-1].details.input_length > 0
    assert all(e.details is None for e in evs[:-1])
    with pytest.raises(ValidationError, match='top_p'): c.text_generation(PROMPTS[0], max_new_tokens=N, **(CARD | dict(top_p=1.5)))
    idle(server.engine)

def test_greedy_equals_cli(server):
    "Greedy text through the TGI route, the completions route and the chat route equals the CLI's."
    code, out = cli_run(['generate', 'smollm2-demo', '--prompt', PROMPTS[1], '--greedy', '--repetition-penalty', '1.0',
                         '--max-new-tokens', str(N), '--json'])
    assert code == 0
    want = json.loads(out.strip().splitlines()[-1])
    c = hub.InferenceClient(base_url=server.url, timeout=300)
    d = c.text_generation(PROMPTS[1], max_new_tokens=N, details=True)   # TGI's defaults: greedy, no penalty
    assert d.generated_text == want['text'] and [t.id for t in d.details.tokens] == want['ids']
    o = openai.OpenAI(base_url=server.url + '/v1', api_key='unused', timeout=300)
    r = o.completions.create(model='smollm2-demo', prompt=PROMPTS[1], max_tokens=N, temperature=0, extra_body=dict(repetition_penalty=1.0))
    assert r.choices[0].text == want['text']
    code, out = cli_run(['generate', 'smollm2-demo', '--prompt', 'What is 2+2?', '--chat', '--greedy', '--max-new-tokens', str(N), '--json'])
    want = json.loads(out.strip().splitlines()[-1])
    r = o.chat.completions.create(model='smollm2-demo', messages=[{'role': 'user', 'content': 'What is 2+2?'}], max_tokens=N, temperature=0)
    assert r.choices[0].message.content == want['text']                  # the card's repetition penalty applies to both

def test_openai_chat(server):
    "The openai client's chat.completions.create, streaming and not."
    o = openai.OpenAI(base_url=server.url + '/v1', api_key='unused', timeout=300)
    msgs = [{'role': 'system', 'content': 'You are terse.'}, {'role': 'user', 'content': 'Name a color.'}]
    r = o.chat.completions.create(model='smollm2-demo', messages=msgs, max_tokens=N, temperature=0)
    assert r.object == 'chat.completion' and r.choices[0].message.role == 'assistant' and r.usage.completion_tokens <= N
    chunks = list(o.chat.completions.create(model='smollm2-demo', messages=msgs, max_tokens=N, temperature=0, stream=True,
                                            stream_options={'include_usage': True}))
    assert chunks[0].choices[0].delta.role == 'assistant'
    assert ''.join(ch.choices[0].delta.content or '' for ch in chunks if ch.choices) == r.choices[0].message.content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == r.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert [m.id for m in o.models.list()] == ['smollm2-demo']

def _stream_text(url, prompt, timeout=600):
    "Greedy text of one streaming request, read by InferenceClient; and its latency."
    t = time.monotonic()
    c = hub.InferenceClient(base_url=url, timeout=timeout)
    return ''.join(c.text_generation(prompt, max_new_tokens=N, stream=True)), time.monotonic() - t

def test_64_concurrent_streaming_clients(server):
    "64 streaming clients at once: every request completes, greedy outputs equal sequential runs, the KV cache empties."
    seq = [_stream_text(server.url, p)[0] for p in PROMPTS]             # one at a time
    before = server.engine.stats()
    jobs = [PROMPTS[i % len(PROMPTS)] for i in range(64)]
    with ThreadPoolExecutor(64) as ex: out = list(ex.map(lambda p: _stream_text(server.url, p), jobs, timeout=900))
    assert [t for t, _ in out] == [seq[i % len(PROMPTS)] for i in range(64)]
    st = idle(server.engine)
    assert st['finished'] - before['finished'] == 64 and st['cancelled'] == before['cancelled']
    assert st['steps'] - before['steps'] < 64 * N / 4                    # requests shared steps: they were batched

def _raw_post(url, path, body:bytes, headers=(), length=None):
    "A raw HTTP/1.1 POST on a socket (for bodies and disconnects a client library will not produce)."
    host, port = url.removeprefix('http://').split(':')
    s = socket.create_connection((host, int(port)), timeout=300)
    size = [] if length == 'chunked' else [f"Content-Length: {len(body) if length is None else length}"]
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    s.sendall((head + ''.join(f"{h}\r\n" for h in [*size, *headers]) + "\r\n").encode() + body)
    return s

def test_client_killed_mid_stream(server, model):
    "A client that disconnects mid-stream is cancelled and its slot freed; a request beside it is unaffected."
    before = server.engine.stats()
    want = _stream_text(server.url, PROMPTS[3])[0]
    s = _raw_post(server.url, '/generate_stream', json.dumps({'inputs': PROMPTS[0], 'parameters': {'max_new_tokens': 100}}).encode())
    with ThreadPoolExecutor(1) as ex:
        other = ex.submit(_stream_text, server.url, PROMPTS[3])
        buf = b''
        while b'data:' not in buf: buf += s.recv(4096)                  # the first token arrived
        s.shutdown(socket.SHUT_RDWR); s.close()                          # killed mid-stream
        assert other.result(timeout=600)[0] == want
    st = idle(server.engine)
    assert st['cancelled'] == before['cancelled'] + 1
    assert st['generated_tokens'] - before['generated_tokens'] < 2 * N + 100   # it stopped well before 100 tokens

def _raw_answer(url, path, body:bytes, headers=(), length=None):
    "Status and JSON body of a raw POST answered on a closed connection."
    s, resp = _raw_post(url, path, body, ['Connection: close', *headers], length), b''
    while chunk := s.recv(65536): resp += chunk
    s.close()
    head, _, payload = resp.partition(b'\r\n\r\n')
    return int(head.split(b' ')[1]), json.loads(payload)

MALFORMED = [
    (b'{"inputs": "hi", "parameters": {', 400), (b'\xff\xfe\x00garbage', 400), (b'', 400), (b'[1, 2]', 422),
    (b'{"inputs": ""}', 422), (b'{"inputs": 42}', 422), (b'{"inputs": "hi", "parameters": {"max_new_tokens": "4"}}', 422),
    (b'{"inputs": "hi", "parameters": {"top_p": 1.5}}', 422), (b'{"inputs": "hi", "parameters": {"top_p": 0}}', 422),
    (b'{"inputs": "hi", "parameters": {"do_sample": true, "temperature": 0}}', 422),
    (b'{"inputs": "hi", "parameters": {"max_new_tokens": 1000}}', 422),
    (json.dumps({'inputs': 'word ' * 200}).encode(), 422),
    (b'{"inputs": "hi", "parameters": {"max_new_tokens": NaN}}', 400),
]

def test_malformed_burst_between_valid(server):
    "A burst of malformed requests while valid ones stream: each gets a 4xx JSON error, no valid request is lost."
    want = [_stream_text(server.url, p)[0] for p in PROMPTS[:2]]
    with ThreadPoolExecutor(4) as ex:
        valid = [ex.submit(_stream_text, server.url, p) for p in PROMPTS[:2]]
        for path in ['/generate', '/generate_stream', '/']:
            for body, code in MALFORMED:
                status, err = _raw_answer(server.url, path, body)
                assert status == code and 'error' in err, (path, body[:80], status, err)
            # oversized: announced by Content-Length (refused before reading), or sent chunked one byte past the limit
            assert _raw_answer(server.url, path, b'', length=200_000)[0] == 413
            big = (b'{"inputs": "' + b'a' * 100_000)[:100_001]
            assert _raw_answer(server.url, path, b'%x\r\n' % len(big) + big + b'\r\n', ['Transfer-Encoding: chunked'], 'chunked')[0] == 413
        valid += [ex.submit(_stream_text, server.url, p) for p in PROMPTS[:2]]
        assert [v.result(timeout=600)[0] for v in valid] == want * 2
    idle(server.engine)
    assert _stream_text(server.url, PROMPTS[0])[0] == want[0]

def test_api_key(model):
    "With --api-key, requests without the bearer key get 401; the real clients pass it."
    engine = Engine(model, max_batch=1, max_total_tokens=64)
    with ServerThread(create_app(engine, 'smollm2-demo', Limits(max_input_length=32, max_total_tokens=64), api_key='k3y')) as s:
        with pytest.raises(TextGenerationError) as e: hub.InferenceClient(base_url=s.url).text_generation('Hi', max_new_tokens=1)
        assert e.value.__cause__.response.status_code == 401
        with pytest.raises(openai.AuthenticationError): openai.OpenAI(base_url=s.url + '/v1', api_key='wrong').models.list()
        assert hub.InferenceClient(base_url=s.url, token='k3y').text_generation('Hi', max_new_tokens=1)
        assert openai.OpenAI(base_url=s.url + '/v1', api_key='k3y').models.list().data[0].id == 'smollm2-demo'
