"""`ragan-eval` as users run it (the installed script): real Fashion-MNIST and Stacked MNIST runs evaluated, and bad
input refused with one error line. Commands run in children forked from tests/conftest.py's command server; one
evaluation also runs as a fresh process (the entry point as installed) and must give the same numbers."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import command_env

FMNIST = Path('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')
MNIST = Path(os.environ.get('RAGAN_MNIST', Path(__file__).resolve().parents[2]/'shared'/'data'/'mnist'))   # the MNIST test set

def fresh(cmd, *args, env=None):   # an installed command as a fresh process
    return subprocess.run([str(Path(sys.executable).parent/cmd), *map(str, args)],
                          capture_output=True, text=True, env=command_env(env), timeout=900)

@pytest.fixture(scope='module')
def cwd(tmp_path_factory): return tmp_path_factory.mktemp('cwd')

@pytest.fixture(scope='module')
def train(commands, cwd):
    "`train(*args, env=None)`: ragan-train in a forked child of the command server."
    return lambda *args, env=None: commands('ragan-train', *args, cwd=cwd, env=env, timeout=900)

@pytest.fixture(scope='module')
def ev(commands, cwd):
    "`ev(*args, env=None)`: ragan-eval in a forked child of the command server."
    return lambda *args, env=None: commands('ragan-eval', *args, cwd=cwd, env=env, timeout=900)

@pytest.fixture(scope='module')
def fmnist_run(train, tmp_path_factory):
    if not FMNIST.is_file(): pytest.skip('dataset-fashion-mnist is not installed (make data)')
    out = tmp_path_factory.mktemp('runs')
    p = train('--dataset', 'fashion_mnist', '--loss', 'RaLSGAN', '--epochs', '1', '--n-images', '256', '--device', 'cpu',
              '--out', out, '--quiet')
    assert p.returncode == 0, p.stderr
    return out/'fashion_mnist_RaLSGAN'

def test_eval_run_folder(ev, fmnist_run):
    "Classifier metrics of 300 samples of the run's newest checkpoint, written next to it; same numbers twice."
    p = fresh('ragan-eval', fmnist_run, '--metrics', 'cfd,classes', '--n', '300', '--quiet')
    assert p.returncode == 0, p.stderr
    r = json.loads((fmnist_run/'eval_epoch_001.json').read_text())
    assert r['n'] == 300 and sum(r['class_counts']) == 300 and r['cfd'] > 0 and 1 <= r['classes_covered'] <= 10
    assert 'classifier FD' in p.stdout and 'eval_epoch_001.json' in p.stdout
    q = ev(fmnist_run/'checkpoints'/'epoch_001.pth', '--metrics', 'cfd,classes', '--n', '300', '--quiet',
           '--out', fmnist_run/'again.json')
    assert q.returncode == 0, q.stderr
    assert json.loads((fmnist_run/'again.json').read_text())['cfd'] == r['cfd']

def test_eval_fid_few_samples_warns(ev, fmnist_run):
    "TF-Inception FID and KID of 10 samples against 10 test images: numbers, and a warning that explains the bias."
    p = ev(fmnist_run, '--metrics', 'fid,kid', '--n', '10', '--n-real', '10', '--quiet', '--out', fmnist_run/'fid.json')
    assert p.returncode == 0, p.stderr
    r = json.loads((fmnist_run/'fid.json').read_text())
    assert r['fid'] > 0 and r['n'] == 10 and r['n_real'] == 10 and 'kid' in r
    assert 'biased upward' in p.stderr and 'published FIDs use 10,000' in p.stderr

@pytest.mark.parametrize('args, msg', [
    (['{nowhere}'], 'does not exist'),
    (['{empty}'], 'holds no checkpoints'),
    (['{notck}'], 'notck.pth is not a ragan-train checkpoint'),
    (['{run}', '--metrics', 'fid,modes'], "not defined for fashion_mnist"),
    (['{run}', '--metrics', 'fdi'], "unknown metric 'fdi'"),
    (['{run}', '--n', '1'], '--n must be >= 2'),
    (['{run}', '--device', 'tpu'], "unknown device 'tpu'; choose one of cpu"),
    (['{run}', '--device', 'cuda:99'], "device 'cuda:99' is not available here"),
])
def test_eval_bad_input(ev, fmnist_run, tmp_path, args, msg):
    (tmp_path/'empty').mkdir(); (tmp_path/'notck.pth').write_text('not a checkpoint')
    paths = dict(nowhere=tmp_path/'nowhere', empty=tmp_path/'empty', notck=tmp_path/'notck.pth', run=fmnist_run)
    p = ev(*[a.format(**paths) for a in args])
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith('ragan-eval: error:') and msg in p.stderr and 'Traceback' not in p.stderr, p.stderr

def test_train_and_eval_check_device_the_same_way(train, ev, fmnist_run, tmp_path):
    "One check of --device for both commands: the same values, the same sentence after the command's name."
    for dev in ('tpu', 'cuda:99', 'mps:1'):
        t = train('--dataset', 'fashion_mnist', '--n-images', '64', '--device', dev, '--out', tmp_path)
        e = ev(fmnist_run, '--device', dev)
        assert t.returncode == e.returncode == 2, (t.stderr, e.stderr)
        assert t.stderr.removeprefix('ragan-train: ') == e.stderr.removeprefix('ragan-eval: '), (t.stderr, e.stderr)
    assert not list(tmp_path.iterdir())   # nothing written for a refused run

@pytest.fixture(scope='module')
def stacked_run(train, tmp_path_factory):
    if not (MNIST/'t10k-images-idx3-ubyte.gz').is_file(): pytest.skip(f'no MNIST test set in {MNIST} (set RAGAN_MNIST)')
    out = tmp_path_factory.mktemp('stacked')
    p = train('--dataset', 'stacked_mnist', '--n-images', '256', '--bs', '32', '--epochs', '1', '--device', 'cpu',
              '--out', out, '--quiet', env={'RAGAN_MNIST': str(MNIST)})
    assert p.returncode == 0, p.stderr
    return out/'stacked_mnist_RaLSGAN'

def test_eval_stacked_mnist_modes_prdc(ev, stacked_run):
    "Modes of 1000 with reverse KL, and precision/recall/density/coverage, of 1000 samples; a warning that 26,000 is the protocol."
    p = ev(stacked_run, '--metrics', 'modes,prdc', '--n', '1000', '--quiet', env={'RAGAN_MNIST': str(MNIST)})
    assert p.returncode == 0, p.stderr
    r = json.loads((stacked_run/'eval_epoch_001.json').read_text())
    assert {'modes', 'modes_kl', 'precision', 'recall', 'density', 'coverage'} <= r.keys(), r
    assert r['n'] == 1000 and r['n_modes'] == 1000 and r['prdc_k'] == 5 and r['prdc_n_real'] == 1000
    assert 1 <= r['modes'] <= 1000 and 0 <= r['modes_kl'] <= math.log(1000) + 1e-9
    assert all(0 <= r[k] <= 1 for k in ('precision', 'recall', 'coverage')) and r['density'] >= 0
    assert 'only at n=26000' in p.stderr and 'modes' in p.stdout
