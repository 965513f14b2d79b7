"""Run a notebook's code cells in order as plain Python, `#| cuda` cells included, `#| slow` skipped: for a GPU box
that has torch but not IPython/nbdev (carry the fastai wheels; stubs stand in for IPython.display and show_doc).
Usage: python tools/nb_cells.py nbs/10_callbacks.ipynb ..."""
import sys, types, time, os, re
import matplotlib; matplotlib.use('Agg')
from pathlib import Path
from fastcore.nbio import read_nb
try: import IPython.display
except ImportError:
    ipy, disp = types.ModuleType('IPython'), types.ModuleType('IPython.display')
    disp.display = lambda *a, **k: None; disp.Image = lambda *a, **k: None; disp.HTML = lambda *a, **k: None
    ipy.display = disp; ipy.get_ipython = lambda: None; ipy.version_info = (9, 0); sys.modules['IPython'] = ipy; sys.modules['IPython.display'] = disp
root = Path.cwd()
for fn in sys.argv[1:]:
    fn = (root/fn).resolve(); os.chdir(fn.parent)
    ns = {'__name__': '__nb__', 'show_doc': lambda *a, **k: None}
    n_cuda = 0
    for i, c in enumerate(read_nb(fn).cells):
        if c.cell_type != 'code' or '#| slow' in c.source: continue
        src = '\n'.join(l for l in c.source.splitlines() if 'nbdev' not in l and not l.lstrip().startswith(('%', '!')))
        cuda = '#| cuda' in c.source
        t = time.perf_counter()
        if cuda: print(f"--- {fn.name} cell {i} (#| cuda) ---\n{c.source}\n--- output:", flush=True)
        exec(compile(src, f'{fn.name}[{i}]', 'exec'), ns)
        if cuda: n_cuda += 1; print(f"--- ok in {time.perf_counter() - t:.2f} s", flush=True)
    print(f"{fn.name}: all cells ran, {n_cuda} cuda cell(s)", flush=True)
