"""The package's layout follows the pipeline: losses -> data/models -> callbacks/learner -> train -> evaluate -> bench
-> commands. A module's rank is the number of the notebook that exports it (nbs/NN_name.ipynb with `#| default_exp`),
so the notebooks' reading order and the import graph are one and the same order. Each module is imported alone in a
fresh interpreter: every ragan_nb module it pulls in must sit at or above it, and no import may point downwards."""
import ast, json, re, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS = ROOT/'ragan_nb', ROOT/'nbs'
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_CELLS = 250, 40, 60


def _ranks() -> dict:
    "module name -> rank, read from the notebooks' `#| default_exp` and their number."
    ranks = {}
    for nb in sorted(NBS.glob('[0-9][0-9]*_*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        for c in cells:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if m: ranks[m.group(1)] = (int(nb.name[:2]), nb.name[2] if nb.name[2].isalpha() else ''); break
    return ranks

RANKS = _ranks()
MODULES = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))


def _imports(mod: str, src: str | None = None) -> set:
    "ragan_nb modules that `mod` imports anywhere in its source (top level or inside functions); `src`: other source."
    tree, out = ast.parse((PKG/f'{mod}.py').read_text() if src is None else src), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])
            elif node.level == 1: out.update(a.name for a in node.names)
            elif node.module and node.module.startswith('ragan_nb.'): out.add(node.module.split('.')[1])
            elif node.module == 'ragan_nb': out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split('.')[1] for a in node.names if a.name.startswith('ragan_nb.'))
    return out - {'__init__'}


def test_every_module_has_a_notebook():
    assert set(MODULES) <= set(RANKS), f'modules without a numbered notebook: {sorted(set(MODULES) - set(RANKS))}'
    assert len(set(RANKS.values())) == len(RANKS), 'two notebooks share a number'


def _upward(mod: str, src: str | None = None) -> list:
    "The ragan_nb modules that `mod` (or `src` put in its place) imports from its own rank or later."
    return sorted(m for m in _imports(mod, src) if m != mod and RANKS.get(m, (-1, '')) >= RANKS[mod])


@pytest.mark.parametrize('mod', MODULES)
def test_no_upward_import(mod):
    up = _upward(mod)
    assert not up, f'ragan_nb.{mod} (notebook {RANKS[mod]}) imports {up}, which come later in the pipeline'


def test_the_check_can_fail():
    "Planted upward imports are caught by the check the test above runs: the negative control."
    losses = (PKG/'losses.py').read_text()
    assert _upward('losses') == []
    assert _upward('losses', losses + '\nfrom .cli import ragan_train\n') == ['cli']
    assert _upward('losses', losses + '\ndef f():\n    import ragan_nb.bench\n') == ['bench']   # inside a function
    assert _upward('losses', losses + '\nfrom ragan_nb import standard, train\n') == ['train']   # standard: notebook 00


def test_each_module_imports_alone_in_a_fresh_interpreter():
    "Import each module by itself; the ragan_nb modules it loaded must all rank at or above it (no cycles, no upward pulls)."
    code = ("import importlib, json, sys\nmod = sys.argv[1]\nimportlib.import_module('ragan_nb.' + mod)\n"
            "print(json.dumps(sorted(m.split('.')[1] for m in sys.modules if m.startswith('ragan_nb.') and m.count('.') == 1)))")
    def load(mod):
        return mod, subprocess.run([sys.executable, '-c', code, mod], capture_output=True, text=True, cwd=ROOT)
    with ThreadPoolExecutor(2) as ex: results = list(ex.map(load, MODULES))   # two fresh interpreters at a time
    for mod, res in results:
        assert res.returncode == 0, f'import ragan_nb.{mod} failed:\n{res.stderr[-2000:]}'
        loaded = json.loads(res.stdout.strip().splitlines()[-1])
        later = sorted(m for m in loaded if m != '_modidx' and RANKS.get(m, (99, '')) > RANKS[mod])
        assert not later, f'importing ragan_nb.{mod} alone loads later modules {later}'


@pytest.mark.parametrize('mod', MODULES)
def test_module_and_function_size(mod):
    src = (PKG/f'{mod}.py').read_text()
    n = sum(1 for l in src.splitlines() if l.strip() and not l.lstrip().startswith('#'))
    assert n <= MAX_MODULE_LINES, f'ragan_nb/{mod}.py has {n} code lines (> {MAX_MODULE_LINES}): split it by job'
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) and len(node.body) > 1 else node.body
            length = node.end_lineno - body[0].lineno + 1   # the body: a docment signature has a line per parameter
            assert length <= MAX_FUNCTION_LINES, f'{mod}.{node.name} is {length} lines (> {MAX_FUNCTION_LINES})'


def test_notebooks_are_short():
    long = {p.name: n for p in NBS.rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(NBS).parts)
            and (n := len(json.loads(p.read_text())['cells'])) > MAX_CELLS}
    assert not long, f'notebooks over {MAX_CELLS} cells: {long}'
