"""Write README.md from nbs/index.ipynb (nbdev's own README command needs Quarto, which this machine lacks).

Markdown cells are copied, with their relative links (notebooks, images) made relative to the repository root, where
README.md sits; visible code cells become ```python blocks followed by their saved text output (not stderr). tests/test_readme.py
runs every ```python block. `python tools/make_readme.py --check` exits 1 if README.md is not what the notebook gives."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _text(src): return ''.join(src) if isinstance(src, list) else src

_RELATIVE_LINK = re.compile(r'\]\((?![a-z][\w+.-]*:|[#/])([^)\s]+)\)')   # ](target) with no scheme, anchor or root

def from_root(md:str) -> str:
    "Markdown of nbs/ as seen from the repository root: `](07_data.ipynb)` -> `](nbs/07_data.ipynb)`."
    return _RELATIVE_LINK.sub(r'](nbs/\1)', md)

def readme(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = ['<!-- Generated from nbs/index.ipynb by tools/make_readme.py; edit the notebook, not this file. -->']
    for c in nb['cells']:
        src = _text(c['source']).strip()
        if not src: continue
        if c['cell_type'] == 'markdown':
            if src.startswith('# ') and '\n> ' in src:   # nbdev title + subtitle -> heading + quote
                title, _, sub = src.partition('\n> ')
                parts.append(f"{title}\n\n> {sub}")
            else: parts.append(from_root(src))
            continue
        if c['cell_type'] != 'code' or src.startswith(('#| hide', '#|hide')) or '#| default_exp' in src: continue
        parts.append(f"```python\n{src}\n```")
        for o in c.get('outputs', []):
            if o.get('name') == 'stderr': continue
            t = _text(o.get('text', '')) or _text(o.get('data', {}).get('text/plain', ''))
            if t.strip(): parts.append(f"```\n{t.rstrip()}\n```")
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, fn = readme(), ROOT/'README.md'
    if '--check' in sys.argv:
        if fn.read_text() != text: sys.exit('README.md is out of date: run `python tools/make_readme.py`')
    else: fn.write_text(text)
