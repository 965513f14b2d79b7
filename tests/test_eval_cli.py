"""`ragan-eval` as users run it (the installed script): real Fashion-MNIST and Stacked MNIST runs evaluated, and bad
input refused with one error line. Commands run in children forked from tests/conftest.py's command server; one
evaluation also runs as a fresh process (the entry point as installed) and must give the same numbers."""
import json, math, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import command_env

FMNIST = Path('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')
from ragan_nb.data import mnist_test_folder
MNIST = mnist_test_folder()   # the MNIST test set as the library finds it, else the 2,000 digits it ships

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
    r = json.loads((fmnist_run/'eval_epoch_001_cfd-classes.json').read_text())
    assert r['n'] == 300 and sum(r['class_counts']) == 300 and r['cfd'] > 0 and 1 <= r['classes_covered'] <= 10
    assert 'classifier FD' in p.stdout and 'eval_epoch_001_cfd-classes.json' in p.stdout and '300 samples' in p.stdout
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
    out = tmp_path_factory.mktemp('stacked')
    p = train('--dataset', 'stacked_mnist', '--split', 'test', '--n-images', '256', '--bs', '32', '--epochs', '1', '--device', 'cpu',
              '--out', out, '--quiet', env={'RAGAN_MNIST': str(MNIST)})
    assert p.returncode == 0, p.stderr
    return out/'stacked_mnist_RaLSGAN'

def test_eval_stacked_mnist_modes_prdc(ev, stacked_run):
    "Modes of 1000 with reverse KL, and precision/recall/density/coverage, of 1000 samples; a warning that 26,000 is the protocol."
    p = ev(stacked_run, '--metrics', 'modes,prdc', '--n', '1000', '--quiet', env={'RAGAN_MNIST': str(MNIST)})
    assert p.returncode == 0, p.stderr
    r = json.loads((stacked_run/'eval_epoch_001_modes-prdc.json').read_text())
    assert {'modes', 'modes_kl', 'precision', 'recall', 'density', 'coverage'} <= r.keys(), r
    assert r['n'] == 1000 and r['n_modes'] == 1000 and r['prdc_k'] == 5 and r['prdc_n_real'] == 1000
    assert 1 <= r['modes'] <= 1000 and 0 <= r['modes_kl'] <= math.log(1000) + 1e-9
    assert all(0 <= r[k] <= 1 for k in ('precision', 'recall', 'coverage')) and r['density'] >= 0
    assert 'only at n=26000' in p.stderr and 'modes' in p.stdout

# ---- issue 25: an evaluation that fits the machine, says how many samples, never replaces a result ----

def run_copy(run, dest):
    "A copy of a run folder without the results earlier tests wrote into it."
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns('eval_*', '*.json.tmp', 'again.json', 'fid.json'))
    return dest

def test_default_metrics_on_a_cpu_are_the_fast_ones(ev, fmnist_run, tmp_path):
    "No --metrics on a CPU: classifier distance and classes (seconds), the sample count and the shipped reference."
    d = run_copy(fmnist_run, tmp_path/'run')
    p = ev(d, '--n', '500', '--quiet', env={'CUDA_VISIBLE_DEVICES': ''})
    assert p.returncode == 0, p.stderr
    r = json.loads((d/'eval_epoch_001_cfd-classes.json').read_text())
    assert r['metrics'] == ['cfd', 'classes'] and 'fid' not in r and r['n'] == 500
    assert ', 500 samples: classifier FD' in p.stdout and 'None samples' not in p.stdout, p.stdout
    assert 'reference: classifier FD 0.902, classes 10' in p.stdout, p.stdout

def test_eval_never_replaces_a_result(ev, fmnist_run, tmp_path):
    "The same evaluation twice: refused before computing, the first file as it was; --force replaces it."
    d = run_copy(fmnist_run, tmp_path/'run')
    args = (d, '--metrics', 'classes', '--n', '200', '--quiet')
    assert ev(*args).returncode == 0
    fn = d/'eval_epoch_001_classes.json'; before = fn.read_bytes()
    p = ev(*args)
    assert p.returncode == 2 and 'holds an earlier evaluation: add --force' in p.stderr, p.stderr
    assert fn.read_bytes() == before
    assert ev(*args, '--force').returncode == 0
    assert ev(d, '--metrics', 'cfd', '--n', '200', '--quiet').returncode == 0   # other metrics: another file
    assert (d/'eval_epoch_001_cfd.json').is_file()

def test_eval_checks_the_folder_before_computing(ev, fmnist_run):
    "An --out that cannot be written is refused at once, naming the folder (not a .tmp file after minutes of work)."
    p = ev(fmnist_run, '--metrics', 'cfd', '--out', '/proc/ragan-eval/eval.json', '--quiet')
    assert p.returncode == 2 and 'cannot write in /proc/ragan-eval' in p.stderr and '.tmp' not in p.stderr, p.stderr

def test_fid_on_a_cpu_says_how_long(ev, fmnist_run, tmp_path):
    p = ev(fmnist_run, '--metrics', 'fid', '--n', '10', '--n-real', '10', '--quiet', '--out', tmp_path/'fid.json',
           env={'CUDA_VISIBLE_DEVICES': ''})
    assert p.returncode == 0, p.stderr
    assert 'note: TF-Inception on the CPU: 10 generated images' in p.stderr and '--metrics cfd,classes takes seconds' in p.stderr

def test_eval_refuses_training_images_as_the_test_set(ev, fmnist_run, tmp_path):
    "A --data folder with the training file only: an error, not the training images scored as if they were the test set."
    d = tmp_path/'train_only'; d.mkdir()
    (d/'train-images-idx3-ubyte.gz').symlink_to(FMNIST.with_name('train-images-idx3-ubyte.gz'))
    p = ev(fmnist_run, '--metrics', 'cfd', '--n', '100', '--data', d, '--out', tmp_path/'x.json', '--quiet')
    assert p.returncode == 2 and 'holds only the train split of fashion_mnist, not its test split' in p.stderr, p.stderr
