"""Every ```python block of README.md runs as written: each one alone, in a fresh Python process (this interpreter,
so the installed `ragan_nb`), in an empty temporary folder, so a block cannot lean on names another block defined or
on files of the checkout. Each runs as a script, as a reader who copies it runs it (a bare expression on its last line
would print nothing), with the machine's default number of threads; a block followed by a saved output must print
it: exactly, where the block sets one thread (its numbers are then those of any machine), else a line of the same
shape.
README.md is generated from nbs/index.ipynb (tests/test_package.py checks that they agree)."""
import os, re, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT/'README.md'

def python_blocks(md:str) -> list:
    "(line number, code, the output block right after it or None) for every ```python fence of `md`."
    out = []
    for m in re.finditer(r'^```python\n(.*?)^```\n', md, flags=re.S | re.M):
        after = re.match(r'\n*```\n(.*?)^```', md[m.end():], flags=re.S | re.M)
        out.append((md[:m.start()].count('\n') + 1, m.group(1), after.group(1) if after else None))
    return out

def shape(text:str) -> str:
    "Printed text with its numbers blanked and its spacing collapsed: what must not change when the random draws do."
    return ' '.join(re.sub(r'-?\d+(?:\.\d+)?(?:e-?\d+)?', '#', text).split())

BLOCKS = python_blocks(README.read_text())

def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3, f'README.md has {len(BLOCKS)} ```python blocks'
    assert any('ragan_learner' in code for _, code, _ in BLOCKS) and any('gan_losses' in code for _, code, _ in BLOCKS)

@pytest.mark.parametrize('line,code,shown', BLOCKS, ids=[f'README.md:{l}' for l, _, _ in BLOCKS])
def test_readme_block_runs(line, code, shown, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}, 'PYTHONPATH': ''}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f'README.md line {line}: the block fails as written:\n{code}\n{res.stderr[-3000:]}'
    assert time.perf_counter() - t < 300, f'README.md line {line}: a README example should be quick'
    if shown is not None and 'torch.set_num_threads(1)' in code:
        assert res.stdout == shown, f'README.md line {line} printed\n{res.stdout}\nwhere README.md shows\n{shown}'
    elif shown is not None:
        assert shape(res.stdout) == shape(shown), f'README.md line {line} printed\n{res.stdout}\nwhere README.md shows\n{shown}'
    else: assert res.stdout.strip() or 'print(' not in code, f'README.md line {line} printed nothing'

def test_quoted_numbers_need_their_threads():
    "A block that quotes training numbers pins its threads: with 2 threads the first one prints other numbers."
    assert all('torch.set_num_threads(1)' in code for _, code, shown in BLOCKS if shown and 'loss' in shown)
