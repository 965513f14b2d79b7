"""Rehearse the GPU machine's Python environment here: only what that machine has, plus the kit's wheels.

The machine has torch, torchvision, torchmetrics, pandas, matplotlib and numpy (and what they depend on), and
nothing else; bench/device_kit.sh gathers the wheels of the rest. This script installs the same packages, at the
kit's versions but for this machine's Python, with `pip install --no-index --no-deps --target` as the remote command
does, and runs a Python with no site-packages whose path holds only the machine's packages (links into this
virtual environment) and that target: `import ragan_nb.train, ragan_nb.bench, ragan_nb.evaluate` there, then
`bench/gpu_suite.py --device cpu --tiny` (every job at a toy budget, or `--only` some). A module the kit misses
fails here.

    .venv/bin/python bench/kit_check.py [--only speed,toys]
"""
import argparse, os, re, shutil, subprocess, sys, sysconfig, tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# what the GPU machine has: the packages named in the issue and what they need (top-level import names, distributions)
REMOTE = ['torch', 'torchgen', 'functorch', 'torchvision', 'torchmetrics', 'lightning_utilities', 'numpy', 'pandas',
          'matplotlib', 'mpl_toolkits', 'PIL', 'packaging', 'typing_extensions', 'sympy', 'mpmath', 'networkx', 'jinja2',
          'markupsafe', 'fsspec', 'filelock', 'triton', 'dateutil', 'six', 'pytz', 'tzdata', 'pyparsing', 'cycler',
          'kiwisolver', 'fontTools', 'contourpy', 'nvidia', 'cuda', 'setuptools', 'pkg_resources', '_distutils_hack']

def kit_wheels() -> list:
    "The `name==version` list of bench/device_kit.sh."
    text = (HERE/'device_kit.sh').read_text()
    block = re.search(r'WHEELS=\((.*?)\)', text, re.S)[1]
    return [w for w in block.split() if '==' in w]

def remote_site(dest:Path) -> Path:
    "A folder of links to the GPU machine's packages (and their metadata) in this virtual environment."
    site = Path(sysconfig.get_paths()['purelib'])
    dists = {'torch', 'torchvision', 'torchmetrics', 'lightning_utilities', 'numpy', 'pandas', 'matplotlib', 'pillow',
             'packaging', 'typing_extensions', 'sympy', 'mpmath', 'networkx', 'jinja2', 'markupsafe', 'fsspec', 'filelock',
             'triton', 'python_dateutil', 'six', 'pytz', 'tzdata', 'pyparsing', 'cycler', 'kiwisolver', 'fonttools',
             'contourpy', 'setuptools'}
    dest.mkdir(parents=True, exist_ok=True)
    for p in site.iterdir():
        top = p.name[:-3] if p.name.endswith('.py') else p.name
        dist = p.name.split('-')[0].lower().replace('.', '_')
        if (top in REMOTE or top in ('numpy.libs', 'pillow.libs', 'torchvision.libs')
                or p.suffix == '.dist-info' and (dist in dists or dist.startswith(('nvidia_', 'cuda_')))):
            (dest/p.name).symlink_to(p)
    return dest

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', default=None, help="the suite's --only (default: every job)")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix='kit_check_'))
    try:
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--only-binary=:all:', '--no-deps', '--python-version', py,
                        '-d', str(tmp/'wheels'), *kit_wheels()], check=True)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--target', str(tmp/'target'),
                        *map(str, sorted((tmp/'wheels').glob('*.whl')))], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
        env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(remote_site(tmp/'site')), str(tmp/'target')]),
                   OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
        py_s = [sys.executable, '-S']   # no site-packages: only the path above
        imp = "import ragan_nb.train, ragan_nb.bench, ragan_nb.evaluate, fastai, sys; print('imports: fastai', fastai.__version__)"
        r = subprocess.run(py_s + ['-c', 'import sys; sys.path.extend(__import__("json").loads(sys.argv[1])); ' + imp,
                                   f'["{HERE/"shims"/"scipy_stub"}", "{HERE/"shims"/"sklearn_stub"}"]'],
                           env=env, cwd=ROOT, capture_output=True, text=True)
        print(r.stdout.strip(), r.stderr.strip()[-3000:] if r.returncode else '')
        if r.returncode: sys.exit('kit_check: the imports fail without the rest of this environment')
        only = ['--only', a.only] if a.only else []
        r = subprocess.run(py_s + [str(HERE/'gpu_suite.py'), '--device', 'cpu', '--tiny', *only, '--out', str(tmp/'out'), '--quiet'],
                           env=env, cwd=ROOT, capture_output=True, text=True)
        log = (tmp/'out'/'suite.log').read_text() if (tmp/'out'/'suite.log').is_file() else ''
        print('\n'.join(l for l in log.splitlines() if not l.startswith('[') or any(w in l for w in ('shims', 'done', 'FAILED', 'finished'))))
        if r.returncode or 'FAILED' in log: sys.exit(f"kit_check: the suite failed: {r.stderr[-3000:]}")
        print('kit_check: the suite runs with the GPU machine\'s packages and the kit alone')
    finally: shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
