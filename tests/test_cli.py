"The `qllama` console script, run as a user runs it: a subprocess, stdin and stdout."
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from qllama.config import QuantConfig, fixture_path
from qllama.load import random_checkpoint, tiny_config, load

QLLAMA = [str(Path(sys.executable).parent/'qllama')]   # the console script pip installed
CARD = fixture_path('codellama-70b-instruct-gptq', 'model-card.txt').read_text()
REF_IDS = json.loads(CARD.split('reference_tokens = ')[1].split(']')[0] + ']')
DIALOG = [{"role": "system", "content": "System prompt    "}, {"role": "user", "content": "First user query"},
          {"role": "assistant", "content": "Model response to first query"}, {"role": "user", "content": "Second user query"}]

def qllama(*args, input=None, check=True):
    r = subprocess.run([*QLLAMA, *map(str, args)], capture_output=True, text=True, input=input, timeout=600,
                       env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    if check and r.returncode: raise AssertionError(f"qllama {args} failed ({r.returncode}):\n{r.stderr}")
    return r

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp('cli')/'tiny', tiny_config(), QuantConfig(bits=3, group_size=32, desc_act=True),
                             tokenizer_from=fixture_path('codellama-70b'))

def test_tokenize_chat_gives_card_ids(tmp_path):
    "The model card's dialog on a tokenizer-only 70B directory gives the card's 49 reference ids."
    (tmp_path/'d.json').write_text(json.dumps(DIALOG))
    assert json.loads(qllama('tokenize', fixture_path('codellama-70b'), '--chat', tmp_path/'d.json').stdout) == REF_IDS

def test_tokenize_chat_without_system_gets_empty_system_turn(tmp_path):
    (tmp_path/'a.json').write_text(json.dumps(DIALOG[1:2]))
    (tmp_path/'b.json').write_text(json.dumps([{"role": "system", "content": ""}] + DIALOG[1:2]))
    a, b = (json.loads(qllama('tokenize', fixture_path('codellama-70b'), '--chat', tmp_path/f).stdout) for f in ('a.json', 'b.json'))
    assert a == b and a.count(32015) == 2   # the empty system turn and the user turn each end with <step>

def test_tokenize_text_is_plain_text():
    ids = json.loads(qllama('tokenize', fixture_path('codellama-70b'), '--text', '<step> </s> Source: assistant').stdout)
    assert ids[0] == 1 and 32015 not in ids and 2 not in ids[1:]

def test_bad_dialog_is_one_line_error(tmp_path):
    (tmp_path/'d.json').write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]))
    r = qllama('tokenize', fixture_path('codellama-70b'), '--chat', tmp_path/'d.json', check=False)
    assert r.returncode == 2 and 'error' in r.stderr and 'Traceback' not in r.stderr

def test_generate_json_matches_api(tiny):
    out = json.loads(qllama('generate', tiny, '--prompt', 'def fib(n):', '--greedy', '--max-new-tokens', 8, '--json').stdout)
    m = load(tiny, progress=False)
    c = m.generate('def fib(n):', max_new_tokens=8, do_sample=False)
    assert out == {'text': c.text, 'ids': c.ids}

def test_generate_streams_same_text(tiny):
    js = json.loads(qllama('generate', tiny, '--prompt', 'hello', '--greedy', '--max-new-tokens', 8, '--json').stdout)
    streamed = qllama('generate', tiny, '--prompt', 'hello', '--greedy', '--max-new-tokens', 8).stdout
    assert streamed == js['text'] + '\n'

def test_generate_seeded_sampling_reproducible(tiny):
    a = qllama('generate', tiny, '--prompt', 'x', '--seed', 3, '--max-new-tokens', 6, '--json').stdout
    assert a == qllama('generate', tiny, '--prompt', 'x', '--seed', 3, '--max-new-tokens', 6, '--json').stdout

def test_chat_repl_history_reset_exit(tiny):
    "Two turns keep history (the second prompt holds the first exchange), /reset clears it, /exit leaves."
    m = load(tiny, progress=False)
    first = m.chat([{'role': 'user', 'content': 'hi'}], max_new_tokens=5, do_sample=False).text
    r = qllama('chat', tiny, '--greedy', '--max-new-tokens', 5, input='hi\nmore\n/reset\nhi\n/exit\n')
    out = r.stdout
    assert out.count('>>> ') == 5 and '(conversation cleared)' in out
    turns = out.split('>>> ')
    assert first in turns[1] and first in turns[4]   # after /reset the same first answer comes back
    second = m.chat([{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': first.strip()},
                     {'role': 'user', 'content': 'more'}], max_new_tokens=5, do_sample=False).text
    assert second in turns[2]

def test_info_json(tiny):
    i = json.loads(qllama('info', tiny, '--json').stdout)
    assert i['quantization']['bits'] == 3 and i['tensors'] > 0 and i['layers'] == 2
