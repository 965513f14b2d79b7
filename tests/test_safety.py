"""Safe to open anything (issue 13): bad data files, bad checkpoints and impossible sizes give one `<command>: error:` line
and exit code 2 and leave every earlier file as it was; a checkpoint can never run code, through any entry point.

Black-box: only the installed scripts (`ragan-train`, `ragan-eval`, `ragan-bench` beside `sys.executable`) and
`torch.load` of files they wrote. A fresh Python spends ~8 s importing torch and fastai, so by default each
command runs in a child forked from a server that imported the commands once (the server is this file run as
`python tests/test_safety.py --serve`); `RAGAN_TEST_FRESH_PROCESS=1` runs every command as a fresh process instead.
"""
import gzip, hashlib, json, os, pickle, re, resource, runpy, shutil, signal, subprocess, sys, time, traceback
from pathlib import Path
import numpy as np
import pytest
import torch

COMMANDS = ('ragan-train', 'ragan-eval', 'ragan-bench')
BIN = Path(sys.executable).parent
FRESH = os.environ.get('RAGAN_TEST_FRESH_PROCESS') == '1' or not hasattr(os, 'fork')
MEMORY_CAP = 8 * 2**30   # address space of one command: the bad sizes must be refused, never tried on a shared machine
TOY, IMG = 'ring8_RaLSGAN', 'mnist_RaLSGAN'   # the two real runs every test starts from

def _cap_memory(): resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

def _env(cwd:Path) -> dict:
    "The environment of one command: one thread, no GPU, no network, the data cache in the test's own folder."
    e = {k: v for k, v in os.environ.items() if k not in ('RAGAN_MNIST', 'RAGAN_FASHION_MNIST', 'RAGAN_CIFAR10')}
    dead = 'http://127.0.0.1:9'
    return {**e, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '', 'RAGAN_DATA': str(Path(cwd)/'cache'),
            'http_proxy': dead, 'https_proxy': dead, 'HTTP_PROXY': dead, 'HTTPS_PROXY': dead}

# ---- the fork server (runs in its own process, started by the `cli` fixture) ----

def _exit_code(code) -> int:
    "What `sys.exit(code)` leaves as a process's exit status."
    if code is None: return 0
    if isinstance(code, int): return code
    print(code, file=sys.stderr); return 1

def _child(req:dict):
    "Run one request in this forked child as a fresh process would (argv, cwd, env, stdio), then exit (never returns)."
    code = 1
    try:
        os.chdir(req['cwd']); os.environ.clear(); os.environ.update(req['env']); _cap_memory()
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, fn in ((1, req['stdout']), (2, req['stderr'])): os.dup2(os.open(fn, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        try:
            sys.argv = list(req['argv'])
            if req['code'] is not None: exec(compile(req['code'], '<string>', 'exec'), {'__name__': '__main__'})
            else: runpy.run_path(sys.argv[0], run_name='__main__')   # the installed script itself, as its own __main__
            code = 0
        except SystemExit as e: code = _exit_code(e.code)
        except BaseException: traceback.print_exc(); code = 1
    finally:
        for f in (sys.stdout, sys.stderr):
            try: f.flush()
            except Exception: pass
        os._exit(code & 0xFF)

def _wait(pid:int, timeout:float):
    "Exit code of child `pid`, or None if it ran past `timeout` seconds (then it is killed)."
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done: return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    return None

def _serve():
    "Import what the installed commands import, then fork one child per JSON request read from stdin; answer its exit code."
    import importlib.metadata as md
    loaded = [ep.name for ep in md.entry_points(group='console_scripts') if ep.name in COMMANDS and ep.load()]
    import importlib   # the commands import the library only for their work (issue 25): import it here, once
    for m in ('ragan_nb.train', 'ragan_nb.evaluate', 'ragan_nb.bench', 'ragan_nb.distributed'): importlib.import_module(m)
    print(json.dumps(sorted(loaded)), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0: _child(req)
        print(json.dumps(_wait(pid, req['timeout'])), flush=True)

class Commands:
    "Run an installed command (or `python -c` code) in `cwd`; return a `subprocess.CompletedProcess` with text output."
    def __init__(self, tmp:Path):
        self.tmp, self.n, self.server = tmp, 0, None
        if FRESH: return
        self.log = tmp/'server.log'
        with open(self.log, 'w') as log:
            self.server = subprocess.Popen([sys.executable, __file__, '--serve'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, text=True, env=_env(tmp), cwd=tmp)
        ready = self.server.stdout.readline()
        if sorted(json.loads(ready or '[]')) != sorted(COMMANDS):
            raise RuntimeError(f"the fork server could not import the commands:\n{self.log.read_text()[-3000:]}")

    preexec = staticmethod(_cap_memory)   # what a fresh process runs before the command (None: nothing)

    def env(self, cwd:Path, extra:dict|None=None) -> dict:
        "The environment of one command run in `cwd` (`extra`: a subclass's additions)."
        return _env(cwd)

    def __call__(self, cmd:str, *args, cwd:Path, code:str|None=None, timeout:float=120, env:dict|None=None):
        argv, e = [str(BIN/cmd) if code is None else '-c', *map(str, args)], self.env(cwd, env)
        if FRESH:
            exe = argv if code is None else [sys.executable, '-c', code, *argv[1:]]
            try: return subprocess.run(exe, capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout,
                                       preexec_fn=self.preexec)
            except subprocess.TimeoutExpired: pytest.fail(f"{cmd} {' '.join(argv[1:])} ran past {timeout} s")
        self.n += 1
        out, err = self.tmp/f'{self.n}.out', self.tmp/f'{self.n}.err'
        req = dict(argv=argv, code=code, cwd=str(cwd), env=e, stdout=str(out), stderr=str(err), timeout=timeout)
        self.server.stdin.write(json.dumps(req) + '\n'); self.server.stdin.flush()
        answer = self.server.stdout.readline()
        if not answer: raise RuntimeError(f"the fork server died:\n{self.log.read_text()[-3000:]}")
        rc = json.loads(answer)
        if rc is None: pytest.fail(f"{cmd} {' '.join(argv[1:])} ran past {timeout} s")
        return subprocess.CompletedProcess(argv, rc, out.read_text(errors='replace'), err.read_text(errors='replace'))

    def close(self):
        if self.server is not None: self.server.stdin.close(); self.server.wait(timeout=60)

# ---- files: data, runs, checkpoints ----

def idx_gz(arr:np.ndarray) -> bytes:
    "`arr` in the IDX format of MNIST's files (unsigned bytes), gzipped."
    head = bytes([0, 0, 8, arr.ndim]) + b''.join(int(n).to_bytes(4, 'big') for n in arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes(), compresslevel=1, mtime=0)

def data_folder(d:Path, content:bytes) -> Path:
    "A folder laid out like MNIST's, whose training images file holds `content`."
    d.mkdir(parents=True); (d/'train-images-idx3-ubyte.gz').write_bytes(content)
    return d

def snapshot(d:Path) -> dict:
    "sha256 of every file under `d`: equal snapshots mean no file was added, removed or changed."
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).rglob('*')) if p.is_file()}

def copy_run(runs:Path, name:str, dest:Path) -> Path:
    shutil.copytree(runs/name, dest/name)
    return dest/name

def edit_checkpoint(src:Path, dest:Path, edit) -> Path:
    "Save at `dest` the checkpoint `src` (a file ragan-train wrote here, so trusted) after `edit(ck)` changed it in place."
    ck = torch.load(src, map_location='cpu', weights_only=False)
    edit(ck)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dest)
    return dest

class Payload:
    "Unpickling this calls exec() on a line that writes `marker`: a harmless stand-in for any code a shared file could run."
    def __init__(self, marker:Path): self.marker = str(marker)
    def __reduce__(self): return exec, (f"open({self.marker!r}, 'w').write('the checkpoint ran code')",)

def malicious(src:Path, dest:Path, marker:Path, epoch:int|None=None) -> Path:
    "A real checkpoint with a `Payload` added (and its epoch changed): full unpickling runs the payload, then works."
    def edit(ck):
        ck['note'] = Payload(marker)
        if epoch is not None: ck['epoch'] = epoch
    return edit_checkpoint(src, dest, edit)

def assert_refused(r, cmd:str, pattern:str, tmp:Path, before:dict, after:dict):
    "Exit code 2, no traceback, one `error:` line (stderr's last, `<cmd>: error: …`, matching `pattern`), no file touched."
    lines, out = [l for l in r.stderr.splitlines() if l.strip()], r.stdout + r.stderr
    last, n_err = (lines[-1] if lines else ''), sum('error:' in l.lower() for l in out.splitlines())
    problems = ([f'exit {r.returncode}'] if r.returncode != 2 else []) + (['a traceback'] if 'Traceback' in out else [])
    if n_err != 1: problems.append(f"{n_err} 'error:' lines")
    elif not last.startswith(f'{cmd}: error: '): problems.append("the error is not stderr's last line")
    if not re.search(pattern, last.replace(str(tmp), '<tmp>'), re.I):   # not in the test's own folder name
        problems.append(f'the message does not match {pattern!r}')
    problems += [f'{how} {f}' for how, fs in (('added', after.keys() - before.keys()), ('removed', before.keys() - after.keys()),
                 ('changed', [f for f in before.keys() & after.keys() if before[f] != after[f]])) for f in sorted(fs)]
    assert not problems, f"{'; '.join(problems)}. Last stderr line: {last[:300] or '(none)'}"

# ---- fixtures ----

@pytest.fixture(scope='module')
def cli(tmp_path_factory):
    c = Commands(tmp_path_factory.mktemp('cli'))
    yield c
    c.close()

@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    "60,000 28-px images laid out as MNIST's training file (a bar whose row encodes i % 10): the real dataset's size."
    x = np.zeros((60_000, 28, 28), np.uint8)
    for k in range(10): x[k::10, 4 + 2*k:6 + 2*k, 4:24] = 255
    return data_folder(tmp_path_factory.mktemp('data')/'digits', idx_gz(x))

@pytest.fixture(scope='module')
def runs(cli, digits, tmp_path_factory) -> Path:
    "Two real 1-epoch runs of ragan-train: a ring8 toy (MLPs) and an image run (DCGAN, 32 px) on `digits`."
    out = tmp_path_factory.mktemp('runs')
    for args in (['--dataset', 'ring8', '--n-images', 512, '--bs', 64],
                 ['--dataset', 'mnist', '--data', digits, '--n-images', 64, '--bs', 32]):
        r = cli('ragan-train', *args, '--epochs', 1, '--device', 'cpu', '--quiet', '--out', out, cwd=out)
        assert r.returncode == 0, r.stderr
    for name in (TOY, IMG): assert (out/name/'checkpoints'/'epoch_001.pth').is_file()
    return out

# ---- every bad input of issue 13: exit 2, one error line, earlier files unchanged ----

CASES = {}
def case(name:str):
    "Register a case: `f(tmp, runs, digits)` sets up `tmp` and returns (command, arguments, pattern of the message)."
    def register(f): CASES[name] = f; return f
    return register

def _fresh(tmp, runs, *args):
    "ragan-train arguments of a new run in an --out folder that already holds a finished run (which must survive)."
    copy_run(runs, TOY, tmp/'out')
    return ['--device', 'cpu', '--quiet', '--epochs', 1, '--out', tmp/'out', *args]

GZ = r'train-images-idx3-ubyte\.gz'

@case('train-truncated-gz')   # a download cut short: gzip raises EOFError
def _(tmp, runs, digits):
    x = np.random.default_rng(0).integers(0, 256, (1000, 28, 28))
    d = data_folder(tmp/'cut', idx_gz(x)[:100_000])
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'mnist', '--data', d, '--bs', 32), GZ

@case('train-garbage-gz')     # an HTML error page saved under the data file's name: gzip raises BadGzipFile
def _(tmp, runs, digits):
    d = data_folder(tmp/'html', b'<!DOCTYPE html>\n<title>404 Not Found</title>\n')
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'mnist', '--data', d, '--bs', 32), GZ

@case('train-labels-as-images')   # train-labels-idx1-ubyte.gz renamed: a valid IDX file of 1-D labels
def _(tmp, runs, digits):
    d = data_folder(tmp/'labels', idx_gz(np.arange(1000) % 10))
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'mnist', '--data', d, '--bs', 32), GZ

@case('train-size-4096')      # 60,000 images of 4096² px: terabytes
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'mnist', '--data', digits, '--size', 4096), r'size'

@case('train-size-0')         # today silently trains at 32 px
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'mnist', '--data', digits, '--size', 0, '--n-images', 64, '--bs', 32), r'size'

@case('train-device-mps')     # no Apple GPU here
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', 512, '--device', 'mps'), r'mps'

@case('train-n-images-1e20')  # a toy draws n samples: 10^20 of them
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', 10**20), r'n.images'

@case('train-n-images-1e20-literal')
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', '1e20'), r'n.images'

@case('train-sn-toy')         # today recorded in config.json and ignored by the MLP critic
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', 512, '--sn'), r'\bsn\b'

@case('train-seed-1e23')
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', 512, '--seed', 10**23), r'seed'

@case('train-bs-1-toy')       # BatchNorm of the toy generator cannot train on one sample
def _(tmp, runs, digits):
    return 'ragan-train', _fresh(tmp, runs, '--dataset', 'ring8', '--loss', 'RaSGAN', '--n-images', 512, '--bs', 1), r'--bs|batch'

def _resume(tmp, runs):
    d = copy_run(runs, TOY, tmp/'out')
    return d, ['--dataset', 'ring8', '--resume', '--epochs', 2, '--device', 'cpu', '--quiet', '--out', tmp/'out']

@case('resume-truncated-checkpoint')   # the newest checkpoint cut in half (a full disk, a copy cut short)
def _(tmp, runs, digits):
    d, args = _resume(tmp, runs)
    fn = d/'checkpoints'/'epoch_001.pth'; fn.write_bytes(fn.read_bytes()[:fn.stat().st_size // 2])
    return 'ragan-train', args, r'epoch_001\.pth'

@case('resume-missing-config')
def _(tmp, runs, digits):
    d, args = _resume(tmp, runs)
    (d/'config.json').unlink()
    return 'ragan-train', args, r'config\.json'

@case('resume-corrupt-config')         # the message must name the file, not only the JSON position
def _(tmp, runs, digits):
    d, args = _resume(tmp, runs)
    (d/'config.json').write_text((d/'config.json').read_text()[:40])
    return 'ragan-train', args, r'config\.json'

def _ck(runs, name): return runs/name/'checkpoints'/'epoch_001.pth'

@case('eval-other-arch-toy')   # the generator's layers are half as wide as the config's MLP: size mismatch
def _(tmp, runs, digits):
    def narrow(ck):
        for k, v in ck['model'].items():
            if k.startswith('generator.') and v.ndim: ck['model'][k] = v[:max(1, len(v) // 2)].clone()
    return 'ragan-eval', [edit_checkpoint(_ck(runs, TOY), tmp/'other_arch.pth', narrow), '--n', 1000], r'other_arch\.pth'

@case('eval-other-arch-image')  # 32-px DCGAN weights under a config that says 64 px
def _(tmp, runs, digits):
    fn = edit_checkpoint(_ck(runs, IMG), tmp/'other_size.pth', lambda ck: ck['config'].update(size=64))
    return 'ragan-eval', [fn, '--n', 100], r'other_size\.pth'

@case('eval-config-without-dataset')
def _(tmp, runs, digits):
    fn = edit_checkpoint(_ck(runs, TOY), tmp/'no_dataset.pth', lambda ck: ck['config'].pop('dataset'))
    return 'ragan-eval', [fn, '--n', 1000], r'dataset'

@case('eval-config-without-arch')
def _(tmp, runs, digits):
    fn = edit_checkpoint(_ck(runs, IMG), tmp/'no_arch.pth', lambda ck: ck['config'].pop('arch'))
    return 'ragan-eval', [fn, '--n', 100], r'arch'

@case('eval-out-is-a-folder')  # must be refused before computing: no results lost, no stray results.png beside it
def _(tmp, runs, digits):
    d = copy_run(runs, TOY, tmp); (tmp/'results').mkdir()
    return 'ragan-eval', [d, '--n', 1000, '--quiet', '--out', tmp/'results'], r'results'

@case('eval-device-mps')
def _(tmp, runs, digits):
    return 'ragan-eval', [copy_run(runs, TOY, tmp), '--n', 1000, '--quiet', '--device', 'mps'], r'mps'

def _record(record_property, r):
    "Exit code and last stderr line in the JUnit XML (`pytest --junitxml=…`): the closing table of issue 13 comes from it."
    record_property('exit_code', r.returncode)
    record_property('last_stderr_line', ([l for l in r.stderr.splitlines() if l.strip()] or [''])[-1][:500])

@pytest.mark.parametrize('name', list(CASES))
def test_refused(cli, runs, digits, tmp_path, record_property, name):
    cmd, args, pattern = CASES[name](tmp_path, runs, digits)
    before = snapshot(tmp_path)
    r = cli(cmd, *args, cwd=tmp_path)
    _record(record_property, r)
    assert_refused(r, cmd, pattern, tmp_path, before, snapshot(tmp_path))

# ---- controls: the same runs work when nothing is wrong ----

def test_real_checkpoints_hold_plain_data(runs):
    "What ragan-train writes loads with weights_only=True: tensors, numbers, strings, lists and dicts only."
    for name in (TOY, IMG):
        ck = torch.load(_ck(runs, name), map_location='cpu', weights_only=True)
        assert ck['epoch'] == 1 and ck['config']['dataset'] == name.split('_')[0]

def test_control_eval_and_resume(cli, runs, tmp_path):
    "The toy run evaluates (exit 0, JSON next to it) and resumes to 2 epochs: the refusals are about the bad input."
    d = copy_run(runs, TOY, tmp_path)
    r = cli('ragan-eval', d, '--n', 1000, '--quiet', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((d/'eval_epoch_001_modes.json').read_text())['n_modes'] == 8
    r = cli('ragan-train', '--dataset', 'ring8', '--resume', '--epochs', 2, '--device', 'cpu', '--quiet', '--out', tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (d/'checkpoints'/'epoch_002.pth').is_file()

def test_newest_checkpoint_sorts_numerically(cli, runs, tmp_path):
    "epoch_1000.pth is newer than epoch_999.pth: ragan-eval of the run folder evaluates epoch 1000."
    d = copy_run(runs, TOY, tmp_path)
    for e in (999, 1000): edit_checkpoint(_ck(runs, TOY), d/'checkpoints'/f'epoch_{e:03d}.pth', lambda ck: ck.update(epoch=e))
    (d/'checkpoints'/'epoch_001.pth').unlink()
    r = cli('ragan-eval', d, '--n', 1000, '--quiet', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in d.glob('eval_*.json')) == ['eval_epoch_1000_modes.json']

# ---- a malicious checkpoint never runs, through every entry point that loads files ----

def _refused_unrun(r, cmd, marker, pattern, tmp, before):
    last = ([l for l in r.stderr.splitlines() if l.strip()] or ['(none)'])[-1][:300]
    assert not marker.exists(), f"the checkpoint's payload ran (exit {r.returncode}; last stderr line: {last})"
    assert_refused(r, cmd, pattern, tmp, before, snapshot(tmp))

@pytest.mark.parametrize('kind', ['torch-zip', 'plain-pickle'])
def test_malicious_eval_file(cli, runs, tmp_path, record_property, kind):
    "A shared generator file: `ragan-eval FILE`. Both torch's zip format and a plain pickle renamed .pth."
    marker, fn = tmp_path/'PWNED', tmp_path/'downloads'/'generator.pth'
    if kind == 'torch-zip': malicious(_ck(runs, TOY), fn, marker)
    else: fn.parent.mkdir(); fn.write_bytes(pickle.dumps(dict(epoch=1, model={}, config={'dataset': 'ring8'}, note=Payload(marker))))
    before = snapshot(tmp_path)
    r = cli('ragan-eval', fn, '--n', 1000, '--quiet', '--device', 'cpu', cwd=tmp_path)
    _record(record_property, r); record_property('payload_ran', marker.exists())
    _refused_unrun(r, 'ragan-eval', marker, r'generator\.pth', tmp_path, before)

def test_malicious_eval_run_folder(cli, runs, tmp_path, record_property):
    "`ragan-eval RUN_DIR` whose newest checkpoint was replaced."
    marker, d = tmp_path/'PWNED', copy_run(runs, TOY, tmp_path)
    malicious(_ck(runs, TOY), d/'checkpoints'/'epoch_002.pth', marker, epoch=2)
    before = snapshot(tmp_path)
    r = cli('ragan-eval', d, '--n', 1000, '--quiet', '--device', 'cpu', cwd=tmp_path)
    _record(record_property, r); record_property('payload_ran', marker.exists())
    _refused_unrun(r, 'ragan-eval', marker, r'epoch_002\.pth', tmp_path, before)

def test_malicious_resume(cli, runs, tmp_path, record_property):
    "`ragan-train --resume` of a real run whose newest checkpoint is the malicious one."
    marker, d = tmp_path/'PWNED', copy_run(runs, TOY, tmp_path)
    malicious(_ck(runs, TOY), d/'checkpoints'/'epoch_002.pth', marker, epoch=2)
    before = snapshot(tmp_path)
    r = cli('ragan-train', '--dataset', 'ring8', '--resume', '--epochs', 3, '--device', 'cpu', '--quiet', '--out', tmp_path, cwd=tmp_path)
    _record(record_property, r); record_property('payload_ran', marker.exists())
    _refused_unrun(r, 'ragan-train', marker, r'epoch_002\.pth', tmp_path, before)

def test_malicious_bench_resume(cli, runs, tmp_path, record_property):
    "`ragan-bench` continuing a grid whose finished run holds the malicious checkpoint (it reads it to skip and to evaluate)."
    marker, out = tmp_path/'PWNED', tmp_path/'bench'
    d = copy_run(runs, TOY, out/'runs'/'seed0')
    malicious(_ck(runs, TOY), d/'checkpoints'/'epoch_001.pth', marker)
    before = snapshot(tmp_path)
    r = cli('ragan-bench', '--out', out, '--dataset', 'ring8', '--losses', 'RaLSGAN', '--seeds', 0, '--epochs', 1,
            '--n-images', 512, '--bs', 64, '--n', 200, '--device', 'cpu', cwd=tmp_path)
    _record(record_property, r); record_property('payload_ran', marker.exists())
    _refused_unrun(r, 'ragan-bench', marker, r'epoch_001\.pth', tmp_path, before)

def test_malicious_cifar_batch(cli, tmp_path, record_property):
    "CIFAR-10 python batches are pickles too: one planted in a --data folder must be refused, its payload never run."
    marker, d = tmp_path/'PWNED', tmp_path/'cifar'
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {b'data': rng.integers(0, 256, (32, 3072)).astype(np.uint8), b'labels': [0] * 32}
        if name == 'data_batch_1': batch[b'note'] = Payload(marker)
        (d/name).write_bytes(pickle.dumps(batch))
    before = snapshot(tmp_path)
    r = cli('ragan-train', '--dataset', 'cifar10', '--data', d, '--n-images', 64, '--bs', 32, '--epochs', 1, '--device', 'cpu',
            '--quiet', '--out', tmp_path/'out', cwd=tmp_path)
    _record(record_property, r); record_property('payload_ran', marker.exists())
    _refused_unrun(r, 'ragan-train', marker, r'data_batch_1', tmp_path, before)

def test_every_torch_load_is_weights_only():
    "No file the package reads can run code: every torch.load passes weights_only=True, and no plain pickle.load(s)."
    import ast, importlib.util
    pkg = Path(importlib.util.find_spec('ragan_nb').submodule_search_locations[0])
    bad = []
    for fn in sorted(pkg.glob('*.py')):
        for node in ast.walk(ast.parse(fn.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)): continue
            mod, attr, kw = node.func.value.id, node.func.attr, {k.arg: k.value for k in node.keywords}
            safe = isinstance(kw.get('weights_only'), ast.Constant) and kw['weights_only'].value is True
            if (mod == 'torch' and attr == 'load' and not safe) or (mod == 'pickle' and attr in ('load', 'loads')):
                bad.append(f'{fn.name}:{node.lineno}: {ast.unparse(node)[:100]}')
    assert not bad, '\n'.join(bad)

LOADERS = ['ragan_nb.runs:read_checkpoint', 'ragan_nb.runs:load_checkpoint', 'ragan_nb.runs:load_generator',
           'ragan_nb.evaluate:load_generator', 'ragan_nb.train:load_checkpoint']   # wherever they live (some move)
CALL_LOADER = '''
import importlib, inspect, sys
where, path = sys.argv[1:]
mod, name = where.split(':')
try: f = getattr(importlib.import_module(mod), name)
except (ImportError, AttributeError): print('absent'); sys.exit(0)
req = [p for p in inspect.signature(f).parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
try: f(*[None if p.name == 'learn' else path for p in req])   # a learner is never reached: the file is refused first
except ValueError as e: print('ValueError'); print(e, file=sys.stderr); sys.exit(0)
print('returned')
'''

@pytest.mark.parametrize('where', LOADERS)
def test_malicious_python_loader(cli, runs, tmp_path, where):
    "The Python loaders (wherever they live now): one ValueError naming the file, and the payload never runs."
    marker = tmp_path/'PWNED'
    fn = malicious(_ck(runs, TOY), tmp_path/'shared.pth', marker)
    r = cli('-c', where, fn, code=CALL_LOADER, cwd=tmp_path)
    if r.stdout.strip() == 'absent': pytest.skip(f'{where} does not exist here')
    assert not marker.exists(), f"{where}: the checkpoint's payload ran ({r.stdout.strip() or r.stderr.strip().splitlines()[-1]})"
    assert r.returncode == 0 and r.stdout.strip() == 'ValueError', f"{where}: {(r.stdout + r.stderr).strip()[-500:]}"
    msg = r.stderr.strip()
    assert 'shared.pth' in msg and '\n' not in msg, msg

if __name__ == '__main__' and sys.argv[1:] == ['--serve']: _serve()
