"""Greedy answers of the SmolLM2 demo (or any chat model directory), with how firmly each token was chosen.

For each question: the greedy answer up to the end of the turn (or `--max-new` tokens), and the smallest margin, in
nats, between the chosen token's log-probability and the runner-up's along it. A small margin means another build of
the same model (other float rounding: AVX2 against AVX-512, other thread counts) may answer differently. The demo
builds compared in `13_demo` came from one machine under different settings:

    QLLAMA_CACHE=/tmp/b3 ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python -c "from qllama.demo import ensure_demo; ensure_demo()"
    QLLAMA_CACHE=/tmp/b4 OMP_NUM_THREADS=1 python -c "from qllama.demo import ensure_demo; ensure_demo()"
    python bench/demo_margins.py ~/.cache/qllama/smollm2-source ~/.cache/qllama/smollm2-demo /tmp/b3/smollm2-demo /tmp/b4/smollm2-demo
"""
import argparse, torch
from qllama.load import load

QUESTIONS = ("What is the capital of France?", "What is the capital of Germany?", "What is the chemical symbol for gold?",
             "What is the largest ocean on Earth?", "What is the opposite of hot?", "Who wrote Hamlet?")

def answer(m, q:str, max_new:int) -> tuple:
    "(greedy answer text, whether it ended its turn, smallest top-1 / top-2 margin in nats, at which token)."
    tok = m.tokenizer
    ids, out, margins = tok.encode_chat([{'role': 'user', 'content': q}]), [], []
    stop = set(tok.eos_ids)
    with torch.no_grad():
        for _ in range(max_new):
            v, i = m(torch.tensor([ids]))[0, -1].float().log_softmax(-1).topk(2)
            margins.append(float(v[0] - v[1])); ids.append(int(i[0])); out.append(int(i[0]))
            if out[-1] in stop: break
    k = min(range(len(margins)), key=margins.__getitem__)
    return tok.decode([t for t in out if t not in stop]), out[-1] in stop, margins[k], k

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('models', nargs='+', help='model directories (a float source and GPTQ builds)')
    ap.add_argument('--questions', nargs='+', default=QUESTIONS)
    ap.add_argument('--max-new', type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for path in a.models:
        m = load(path, dtype=torch.float32, progress=False)
        print('==', path)
        for q in a.questions:
            text, stopped, mg, k = answer(m, q, a.max_new)
            print(f"{q!r:42} margin {mg:.2f} (token {k}) {'stop' if stopped else 'length'}: {text!r}", flush=True)

if __name__ == '__main__': main()
