"""GPTQModel 7.6.0 at 3 bits: its in-memory quantized weights against its saved checkpoint as qllama reads it (CPU).

Quantizes SmolLM2-135M-Instruct (the compare script's settings, NSAMPLES x 256 calibration tokens, seed 0, two torch
threads) with GPTQModel, keeping every linear's quantized weight (`wq`, fp32 scales) as the column loop returns it,
saves the model, loads the checkpoint with `qllama.load`, and reports per linear how far qllama's dequantized weight
lies from `wq` (in quantization steps), then the perplexity of the saved model (compare script's evaluation windows).

    python bench/gptqmodel_readback.py BITS NSAMPLES      # e.g. 3 64; prints a summary
"""
import os, sys, json, time, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
import quantize_compare as qc
os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2')
from gptqmodel import GPTQModel, QuantizeConfig
from gptqmodel.quantization import gptq as G
from qllama.quantize import calibration_windows
from qllama.perplexity import stdlib_glob, text_files, perplexity, read_tokens, token_windows
from qllama.tokenizer import Tokenizer
from qllama.load import load
from qllama.gptq import QuantLinear, dequantize
torch.set_num_threads(2)
bits, ns, sl = int(sys.argv[1]), int(sys.argv[2]), 256
src = Path.home()/'.cache/qllama/smollm2-source'
dump = Path(tempfile.mkdtemp(prefix='inv-')); out = dump/'ckpt'
orig = G.GPTQ.quantize
def keep(self, blocksize=128):
    r = orig(self, blocksize=blocksize)
    torch.save(dict(wq=r[0].clone()), dump/f'{self._named_module.layer_index}.{self._named_module.name}.pt')
    return r
G.GPTQ.quantize = keep
ids = calibration_windows(Tokenizer.from_dir(src), text_files(str(Path(stdlib_glob()).parent/qc.CALIB)), ns, sl, seed=0)
model = GPTQModel.load(str(src), QuantizeConfig(**qc.settings(bits)), device='cpu', dtype=torch.float32)
model.quantize([{'input_ids': w.tolist(), 'attention_mask': [1] * len(w)} for w in ids], batch_size=8)
model.save(str(out))
del model
q = load(out, progress=False)
win = token_windows(read_tokens(q.tokenizer, text_files(str(Path(stdlib_glob()).parent/qc.EVAL)), 8 * 512), 512, 8)
res = {}
worst = []
for n, m in q.named_modules():
    if isinstance(m, QuantLinear):
        i, name = n.split('.layers.')[1].split('.', 1)
        wq = torch.load(dump/f'{i}.{name}.pt')['wq'].float()           # [out, in]
        wd = dequantize(m.qweight, m.qzeros, m.scales, m.g_idx, m.bits, m.v2).float().T
        g = m.g_idx.long(); s = m.scales.float()[g].T                    # [out, in]
        k = ((wd - wq).abs() / s)                                        # in units of the scale
        worst.append((k.max().item(), (k > 0.5).float().mean().item(), ((wd - wq).norm() / wq.norm()).item(), n))
worst.sort(reverse=True)
print('linears', len(worst), 'with a weight off by > half a step:', sum(w[1] > 0 for w in worst))
for w in worst[:12]: print(f'  max {w[0]:.3f} steps, frac>0.5 {w[1]:.2e}, rel {w[2]:.2e}  {w[3]}')
res['ppl_saved_read_by_qllama'] = qc.dense(q) and perplexity(q, win, progress=False)['ppl']
print(res)
