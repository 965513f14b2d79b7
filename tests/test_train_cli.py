"""End-to-end tests of the `ragan-train` command, run as a user runs it: the installed script with its own argv, cwd,
environment and output. Most commands run in a child forked from tests/conftest.py's server (which imported the
command once); the entry point itself also runs as a fresh process here (`good_run`, the run killed with SIGKILL),
and `RAGAN_TEST_FRESH_PROCESS=1` runs every command that way."""
import hashlib, os, pickle, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
from conftest import command_env

ROOT = Path(__file__).resolve().parents[1]
from ragan_nb.data import mnist_test_folder
MNIST = mnist_test_folder()   # the MNIST test set as the library finds it, else the 2,000 digits it ships
EXE = Path(sys.executable).parent/'ragan-train'
FMNIST = Path('/usr/share/datasets/fashion-mnist')

def fresh_run(*args, env=None, cwd=None, timeout=300):
    "Run ragan-train with `args` as a fresh process; return the CompletedProcess (text)."
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, env=command_env(env), cwd=cwd,
                          timeout=timeout)

@pytest.fixture(scope='module')
def run(commands, tmp_path_factory):
    "`run(*args, env=None)`: ragan-train with `args` in a forked child of the command server; the CompletedProcess (text)."
    cwd = tmp_path_factory.mktemp('cwd')
    return lambda *args, env=None, timeout=300: commands('ragan-train', *args, cwd=cwd, env=env, timeout=timeout)

def tiny(out, *extra):
    "Arguments of a quick MNIST run (64 official test-set digits, batch 32: the test split, the one at hand)."
    return ['--dataset', 'mnist', '--data', MNIST, '--split', 'test', '--n-images', 64, '--bs', 32, '--device', 'cpu', '--quiet', '--out', out, *extra]

def snapshot(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).rglob('*')) if p.is_file()}

def params(fn):
    "A checkpoint, loaded as a user should load an untrusted file: tensors and plain Python only."
    return torch.load(fn, map_location='cpu', weights_only=True)

def assert_same(a, b, where=''):
    "Nested dicts and lists of tensors and plain values, equal bit for bit."
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a: assert_same(a[k], b[k], f'{where}/{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): assert_same(x, y, f'{where}/{i}')
    else: assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), where

def assert_same_state(a, b):
    "Two checkpoints hold the same epoch, weights, optimiser state (Adam's moments and steps) and random state."
    ca, cb = params(a), params(b)
    assert ca['epoch'] == cb['epoch'] and len(ca['opt']['state'])
    for k in ('model', 'opt', 'rng'): assert_same(ca[k], cb[k], k)

def test_data_present():
    "The data the tests rely on: the official MNIST test set beside the project, Debian's Fashion-MNIST package."
    assert (MNIST/'t10k-images-idx3-ubyte.gz').is_file(), MNIST
    assert (FMNIST/'train-images-idx3-ubyte.gz').is_file(), "apt-get install dataset-fashion-mnist (make data)"

@pytest.fixture(scope='module')
def good_run(tmp_path_factory):
    "A finished 1-epoch run whose files must survive every bad command (a fresh process: the entry point as installed)."
    out = tmp_path_factory.mktemp('good')
    r = fresh_run(*tiny(out, '--epochs', 1))
    assert r.returncode == 0, r.stderr
    d = out/'mnist_RaLSGAN'
    assert {'epoch_001.png', 'loss.png', 'history.csv', 'config.json'} <= {p.name for p in d.iterdir()}
    assert (d/'checkpoints'/'epoch_001.pth').is_file()
    assert 'samples: ' in r.stdout and str(d) in r.stdout
    return out

BAD = {
    'dataset':   (['--dataset', 'svhn'], "invalid choice: 'svhn'"),
    'loss':      (['--loss', 'RaFooGAN'], "Unknown GAN loss 'RaFooGAN'"),
    'arch':      (['--arch', 'resnet'], "unknown architecture 'resnet'"),
    'size-sngan':(['--arch', 'sngan', '--size', '28'], 'takes 32-px images only'),
    'size-dcgan':(['--size', '30'], 'takes images of side 4·2^k or 7·2^k'),
    'epochs':    (['--epochs', '0'], 'epochs must be a positive integer'),
    'bs':        (['--bs', '-4'], 'bs must be a positive integer'),
    'lr':        (['--lr', '0'], 'lr must be a positive number'),
    'lr-neg':    (['--lr=-1e-4'], 'lr must be a positive number'),
    'n-crit':    (['--n-crit', '0'], 'n_crit must be a positive integer'),
    'realness-gp': (['--loss', 'realness', '--gp', '10'], "RealnessGAN's critic outputs N logits"),
    'device':    (['--device', 'tpu'], "unknown device 'tpu'; choose one of cpu"),
    'device-gpu':(['--device', 'cuda:99'], "device 'cuda:99' is not available here"),
    'data':      (['--data', '/no/such/folder'], 'data: /no/such/folder is not a folder'),
    'fresh-run-over-a-run': ([], 'already holds a run (up to epoch_001): continue it with --resume'),
    'r1-negative': (['--r1=-0.1'], 'r1 (a penalty weight γ) must be a number >= 0, got -0.1'),
    'r2-negative': (['--r2=-1'], 'r2 (a penalty weight γ) must be a number >= 0, got -1.0'),
    'reg-every': (['--r1', '0.1', '--reg-every', '0'], 'reg_every must be a positive integer, got 0'),
    'augment':   (['--augment', 'translation,flip'], "Unknown DiffAugment policy 'flip'. Valid names: color, translation, cutout"),
    'ema-zero':  (['--ema', '0'], 'ema (the half-life of the generator average, in images) must be a positive number, got 0.0'),
    'ema-negative': (['--ema=-100'], 'ema (the half-life of the generator average, in images) must be a positive number, got -100.0'),
    'ema-inf':   (['--ema', 'inf'], 'ema (the half-life of the generator average, in images) must be a finite number, got inf'),
    'lr-neg-space': (['--lr', '-1e-4'], 'lr must be a positive number, got -0.0001'),   # argparse read -1e-4 as an option
    'recipe':    (['--recipe', 'stylegan'], "unknown recipe 'stylegan'; choose one of paper, r3gan"),
    'recipe-gp': (['--recipe', 'r3gan', '--loss', 'RpSGAN-GP'], 'alternatives: use one'),
}

@pytest.mark.parametrize('case', list(BAD))
def test_bad_input(run, good_run, case):
    args, msg = BAD[case]
    before = snapshot(good_run)
    r = run(*tiny(good_run), *args)   # argparse keeps the last value of a repeated flag
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert msg in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()   # argparse's usage (however many lines it wraps to), then one error line
    assert [l for l in lines if not l.startswith(('usage: ', ' '))] == lines[-1:] and r.stderr.count('error') == 1, r.stderr
    assert snapshot(good_run) == before

def test_missing_training_split_is_an_error(run, tmp_path):
    "Only MNIST's test file at hand and no --split: an error that suggests --split test, not a run on the test split."
    r = run('--dataset', 'mnist', '--data', MNIST, '--n-images', 64, '--bs', 32, '--device', 'cpu', '--out', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert 'holds only the test split of mnist, not its train split: train on it with --split test' in r.stderr, r.stderr
    assert not list(tmp_path.rglob('config.json'))   # nothing recorded as a training-split run

def test_unwritable_out(run, good_run, tmp_path):
    blocker = tmp_path/'a-file'; blocker.write_text('not a folder')
    for out in [blocker/'sub', '/proc/ragan-out']:
        r = run(*tiny(out, '--epochs', 1))
        assert r.returncode == 2 and 'cannot write to' in r.stderr, r.stderr
        assert 'Traceback' not in r.stderr
    assert blocker.read_text() == 'not a folder'

def test_nonfinite_loss_keeps_last_checkpoint(run, good_run):
    "lr 1e30 blows the critic up: the run stops with exit 3, names the last good checkpoint and leaves it as it was."
    d = good_run/'mnist_RaLSGAN'
    before = snapshot(good_run)
    r = run(*tiny(good_run, '--resume', '--epochs', 3, '--lr', 1e30))
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert 'became nan' in r.stderr or 'became inf' in r.stderr, r.stderr
    assert f"last good checkpoint is {d/'checkpoints'/'epoch_001.pth'}" in r.stderr
    assert 'Traceback' not in r.stderr
    assert snapshot(good_run) == before

@pytest.mark.parametrize('loss', ['WGAN-GP', 'realness'])
def test_resume_after_stop_equals_uninterrupted(run, tmp_path, loss):
    "2 epochs, then --resume to 4: same parameters and Adam state as 4 at once (penalty / anchor generators restored)."
    args = ['--loss', loss, '--n-crit', 2, '--seed', 3, '--n-images', 128]
    assert run(*tiny(tmp_path/'a', *args, '--epochs', 4)).returncode == 0
    assert run(*tiny(tmp_path/'b', *args, '--epochs', 2)).returncode == 0
    r = run(*tiny(tmp_path/'b', *args, '--epochs', 4, '--resume'))
    assert r.returncode == 0, r.stderr
    d = f'mnist_{loss}/checkpoints/epoch_004.pth'
    assert_same_state(tmp_path/'a'/d, tmp_path/'b'/d)
    # the history of the resumed run is the uninterrupted one
    assert (tmp_path/'a'/f'mnist_{loss}'/'history.csv').read_text() == (tmp_path/'b'/f'mnist_{loss}'/'history.csv').read_text()

def _kill_then_resume(run, tmp_path, args, loss='RaLSGAN'):
    "Run `args` to the end in a/; in b/ (a fresh process) SIGKILL it after its first checkpoint, --resume: both epoch_004.pth."
    assert run(*tiny(tmp_path/'a', *args)).returncode == 0
    ckdir = tmp_path/'b'/f'mnist_{loss}'/'checkpoints'
    p = subprocess.Popen([str(EXE), *map(str, tiny(tmp_path/'b', *args))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=command_env())
    t0 = time.time()
    while not (ckdir/'epoch_001.pth').exists():
        assert p.poll() is None and time.time() - t0 < 240, 'the run ended before its first checkpoint'
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    done = sorted(x.name for x in ckdir.glob('epoch_*.pth'))
    assert done and done[-1] != 'epoch_004.pth', done    # it really was interrupted
    r = run(*tiny(tmp_path/'b', *args, '--resume'))
    assert r.returncode == 0, r.stderr
    return tmp_path/'a'/f'mnist_{loss}'/'checkpoints'/'epoch_004.pth', ckdir/'epoch_004.pth'

def test_resume_after_kill_equals_uninterrupted(run, tmp_path):
    "SIGKILL the process once an epoch's checkpoint exists, resume: same parameters as an uninterrupted run."
    assert_same_state(*_kill_then_resume(run, tmp_path, ['--n-images', 512, '--seed', 5, '--epochs', 4]))

def test_resume_after_kill_with_recipe_equals_uninterrupted(run, tmp_path):
    "The same with R1 + R2, a generator EMA and DiffAugment: their state (EMA average, step counter, RNG) resumes exactly."
    a, b = _kill_then_resume(run, tmp_path, ['--n-images', 512, '--size', 16, '--seed', 5, '--epochs', 4, '--ema', 1000,
                                        '--r1', 0.1, '--r2', 0.1, '--reg-every', 2, '--augment', 'translation,cutout'])
    assert_same_state(a, b)
    ca, cb = params(a), params(b)
    assert sorted(ca['callbacks']) == ['augment', 'ema', 'penalty'] and ca['callbacks']['penalty']['n_critic_steps'] == 4 * 8
    assert_same(ca['callbacks'], cb['callbacks'], 'callbacks')
    cfg = (a.parent.parent/'config.json').read_text()
    assert '"ema": 1000.0' in cfg and '"augment": "translation,cutout"' in cfg and '"reg_every": 2' in cfg

def test_recipe_r3gan_config(run, tmp_path):
    "--recipe r3gan resolves to RpSGAN, r1 = r2 = 0.1, EMA 10000, betas (0, 0.99); an explicit flag overrides the preset."
    r = run(*tiny(tmp_path, '--recipe', 'r3gan', '--r2', 0.2, '--epochs', 1))
    assert r.returncode == 0, r.stderr
    cfg = params(tmp_path/'mnist_RpSGAN'/'checkpoints'/'epoch_001.pth')['config']
    assert {k: cfg[k] for k in ('recipe', 'loss', 'r1', 'r2', 'ema', 'betas', 'lr')} == \
        dict(recipe='r3gan', loss='RpSGAN', r1=0.1, r2=0.2, ema=10_000, betas=(0.0, 0.99), lr=2e-4)
    assert '"r2": 0.2' in (tmp_path/'mnist_RpSGAN'/'config.json').read_text()   # config.json records the resolved values
    assert 'ema' in params(tmp_path/'mnist_RpSGAN'/'checkpoints'/'epoch_001.pth')['callbacks']

def test_stacked_mnist_trains(run, tmp_path):
    "Stacked MNIST (3 channels) through the command, on a folder laid out like MNIST's (its test files as the training split)."
    d = tmp_path/'mnist'; d.mkdir()
    for kind in ('images-idx3', 'labels-idx1'): shutil.copy(MNIST/f't10k-{kind}-ubyte.gz', d/f'train-{kind}-ubyte.gz')
    r = run('--dataset', 'stacked_mnist', '--data', d, '--n-images', 128, '--bs', 32, '--epochs', 1, '--device', 'cpu',
            '--quiet', '--out', tmp_path/'out')
    assert r.returncode == 0, r.stderr
    ck = params(tmp_path/'out'/'stacked_mnist_RaLSGAN'/'checkpoints'/'epoch_001.pth')
    first = next(v for k, v in ck['model'].items() if k.startswith('critic.') and v.ndim == 4)
    assert first.shape[1] == 3 and ck['config']['dataset'] == 'stacked_mnist'   # the critic reads 3 colour channels

# ---- each data source, through the command ----

def test_source_env_var(run, tmp_path):
    r = run('--dataset', 'mnist', '--split', 'test', '--n-images', 64, '--bs', 32, '--epochs', 1, '--out', tmp_path,
            '--device', 'cpu', env={'RAGAN_MNIST': str(MNIST), 'RAGAN_DATA': str(tmp_path/'cache')})
    assert r.returncode == 0, r.stderr
    assert f'from RAGAN_MNIST: {MNIST}' in r.stdout

def test_source_debian_fashion_mnist(run, tmp_path):
    r = run('--n-images', 64, '--bs', 32, '--epochs', 1, '--out', tmp_path, '--device', 'cpu',
            env={'RAGAN_DATA': str(tmp_path/'cache')})           # default dataset: fashion_mnist
    assert r.returncode == 0, r.stderr
    assert '60000 images from local copy in /usr/share/datasets/fashion-mnist' in r.stdout, r.stdout[:300]
    assert (tmp_path/'fashion_mnist_RaLSGAN'/'epoch_001.png').is_file()

def _write_cifar(folder, n=32):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        with open(folder/name, 'wb') as f: pickle.dump({b'data': data, b'labels': [0]*n}, f)

def test_source_cifar_local_copy(run, tmp_path):
    "CIFAR-10 python batches in the cache folder (where a download would have put them) are found and used."
    _write_cifar(tmp_path/'cache'/'cifar10'/'cifar-10-batches-py')
    r = run('--dataset', 'cifar10', '--bs', 32, '--epochs', 1, '--out', tmp_path/'out', '--device', 'cpu',
            '--arch', 'sngan', env={'RAGAN_DATA': str(tmp_path/'cache')})
    assert r.returncode == 0, r.stderr
    assert 'cifar10: 160 images from local copy in' in r.stdout

def test_source_offline_nothing_found(run, tmp_path):
    "No copy anywhere and no network: exit 2 with one message saying where to put the files."
    r = run('--dataset', 'cifar10', '--epochs', 1, '--out', tmp_path/'out', '--device', 'cpu',
            env={'RAGAN_DATA': str(tmp_path/'cache'), 'https_proxy': 'http://127.0.0.1:9', 'http_proxy': 'http://127.0.0.1:9',
                 'HTTPS_PROXY': 'http://127.0.0.1:9', 'HTTP_PROXY': 'http://127.0.0.1:9'})
    assert r.returncode == 2, r.stderr
    assert 'could not find the cifar10 dataset' in r.stderr and 'set RAGAN_CIFAR10=<folder>' in r.stderr
    assert 'Traceback' not in r.stderr

def test_toy_dataset_writes_scatter_plots(run, tmp_path):
    r = run('--dataset', 'grid25', '--n-images', 1024, '--bs', 128, '--epochs', 1, '--out', tmp_path, '--device', 'cpu', '--quiet')
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'grid25_RaLSGAN'/'epoch_001.png').is_file()
    assert 'epoch 1/1' in r.stdout

def test_realness_loss_runs(run, tmp_path):
    r = run(*tiny(tmp_path, '--loss', 'realness', '--epochs', 1))
    assert r.returncode == 0, r.stderr
    ck = params(tmp_path/'mnist_realness'/'checkpoints'/'epoch_001.pth')
    assert ck['model']['critic.8.weight'].shape[0] == 51   # N outcomes of the official image runs

def test_checkpoints_sort_by_epoch_number(run, tmp_path):
    "A run past epoch 999: --resume continues from epoch_1000.pth, not from epoch_999.pth (which sorts last as text)."
    args = ['--dataset', 'grid9', '--n-images', 128, '--bs', 64, '--device', 'cpu', '--quiet', '--out', tmp_path]
    assert run(*args, '--epochs', 2).returncode == 0
    ckdir = tmp_path/'grid9_RaLSGAN'/'checkpoints'
    ck = params(ckdir/'epoch_002.pth')
    for e in (998, 999, 1000):   # the same state, relabelled as if the run had gone on that long
        torch.save({**ck, 'epoch': e}, ckdir/f'epoch_{e}.pth')
    (ckdir/'epoch_002.pth').unlink(); (ckdir/'epoch_001.pth').unlink()
    r = run(*args, '--epochs', 1001, '--resume')
    assert r.returncode == 0, r.stderr
    assert 'epoch 1001/1001' in r.stdout
    # the 3 latest are kept: as text, epoch_998 and epoch_999 sort after epoch_1001 and epoch_1000 would have gone
    assert sorted(p.name for p in ckdir.iterdir()) == ['epoch_1000.pth', 'epoch_1001.pth', 'epoch_999.pth']
    assert params(ckdir/'epoch_1001.pth')['epoch'] == 1001

def test_resume_refuses_a_file_that_is_not_a_checkpoint(run, tmp_path):
    ckdir = tmp_path/'mnist_RaLSGAN'/'checkpoints'; ckdir.mkdir(parents=True)
    (ckdir/'epoch_001.pth').write_text('not a checkpoint')
    r = run(*tiny(tmp_path, '--resume', '--epochs', 2))
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert f"error: {ckdir/'epoch_001.pth'} is not a ragan-train checkpoint" in r.stderr, r.stderr
