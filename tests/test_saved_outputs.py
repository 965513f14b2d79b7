"""Saved outputs are documentation: the docs site and GitHub show them as they are. None of them may hold a console
progress bar (text a carriage return overwrites, or fastprogress's HTML bar), a local absolute path (this machine's
folders mean nothing to a reader and leak where the notebook ran) or a traceback. Each notebook is its own test, and a
failure names every offending output by cell number and id. (tools/build_docs.py also renders stream outputs as a
notebook would, so a stray bar does not flood the site; this test keeps the notebooks themselves clean.)"""
import json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

def _notebooks():
    "Every notebook of nbs/, the tutorials included (not nbdev's `_proc` copies or Jupyter's checkpoints)."
    return sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob('*.ipynb')
                  if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

# a local absolute path: one of the usual roots, or this checkout's own folder, not inside a URL
_LOCAL = re.compile(r'(?<![\w.~/:-])(?:/(?:work|tmp|root|home)/|' + re.escape(str(ROOT)) + ')')
_TRACEBACK = re.compile(r'Traceback \(most recent call last\)')

def _text(x): return ''.join(x) if isinstance(x, list) else (x or '')

def output_texts(o:dict) -> list:
    "The texts of one saved output: a stream's text, an error's traceback, and every text-like MIME type (not images)."
    if o.get('output_type') == 'stream': return [_text(o.get('text'))]
    if o.get('output_type') == 'error': return [_text(o.get('traceback')), f"{o.get('ename')}: {o.get('evalue')}"]
    return [_text(v) for k, v in (o.get('data') or {}).items() if k.startswith('text/') or k.endswith(('json', 'javascript'))]

def problems(o:dict) -> list:
    "What is wrong with one saved output, as short phrases (empty: nothing)."
    found, texts = [], output_texts(o)
    if any('\r' in t for t in texts): found.append('a carriage-return progress bar')
    if any('<progress' in t for t in texts): found.append("fastprogress's HTML progress bar")
    if (m := next((m for t in texts if (m := _LOCAL.search(t))), None)):
        line = next(l for l in m.string[m.start():].splitlines() or [''])
        found.append(f'a local absolute path ({(m.string[max(0, m.start() - 20):m.start()] + line)[:90].strip()!r})')
    if o.get('output_type') == 'error' or any(_TRACEBACK.search(t) for t in texts): found.append('a traceback')
    return found

@pytest.mark.parametrize('nb', _notebooks())
def test_saved_outputs_are_documentation(nb):
    cells = json.loads((NBS/nb).read_text())['cells']
    bad = [f"cell {i} (id {c.get('id', '?')}): {', '.join(p)}"
           for i, c in enumerate(cells) for o in c.get('outputs', []) if (p := problems(o))]
    assert not bad, f'{nb}: saved outputs a reader should not see:\n  ' + '\n  '.join(bad)

def test_the_checks_can_fail():
    "Each check fires on what it is meant to catch, and not on ordinary output."
    stream = lambda t, name='stdout': dict(output_type='stream', name=name, text=t)
    assert problems(stream('epoch 1 |████| 100% [4/4]\repoch 1 done\n')) == ['a carriage-return progress bar']
    assert problems(dict(output_type='display_data', data={'text/html': '<progress value="3" max="4"></progress>'}))
    assert 'a local absolute path' in problems(stream('/work/main/.venv/lib/x.py:3: UserWarning: w\n', 'stderr'))[0]
    assert problems(stream(f'saved to {ROOT}/result\n'))
    assert problems(stream('cached in /root/.cache/ragan_nb/x.pt\n')) and problems(stream('-> /tmp/tmpab12/x.png\n'))
    assert problems(dict(output_type='error', ename='ValueError', evalue='bad', traceback=['ValueError: bad']))
    assert problems(stream('Traceback (most recent call last):\n  File "x.py", line 1\n', 'stderr')) == ['a traceback']
    for fine in ('epoch 1/3: G loss 4.8, C loss 0.3 -> fashion_mnist_RaLSGAN/epoch_001.png\n',
                 'see https://example.com/tmp/x and ~/.cache/ragan_nb/x.pt', 'from /usr/share/datasets/fashion-mnist\n',
                 'ValueError raised as expected'):
        assert problems(stream(fine)) == [], fine
