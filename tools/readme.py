"Write README.md from nbs/index.ipynb (what nbdev_readme does with Quarto, which this project cannot install)."
import json, re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))
parts = []
for c in nb['cells']:
    src = ''.join(c['source'])
    if c['cell_type'] == 'markdown': parts.append(re.sub(r'^> (.*)$', r'> \1', src, count=1, flags=re.M))
    elif c['cell_type'] == 'code' and not src.lstrip().startswith('#|'): parts.append(f"```python\n{src}\n```")
(root/'README.md').write_text('<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n'
                               + '\n\n'.join(parts) + '\n', encoding='utf-8')
