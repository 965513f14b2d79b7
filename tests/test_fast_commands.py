"""The commands answer at once (issue 25): `--help` and every mistake in an option's value are answered before torch
and fastai are imported, by the checks of `ragan_nb.checks` that `check_config` (the Python API) runs too.

Each command runs as a fresh process here, the way a user starts it: the fork server of tests/test_safety.py has
torch imported already, so it could not tell."""
import os, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import command_env

BIN = Path(sys.executable).parent

# Runs an installed command's entry point in this interpreter, then says whether torch or fastai got imported.
PROBE = """
import runpy, sys
exe, *args = sys.argv[1:]
sys.argv = [exe, *args]
try: runpy.run_path(exe, run_name='__main__')
except SystemExit as e: code = e.code
else: code = 0
heavy = sorted(m for m in ('torch', 'fastai', 'matplotlib') if m in sys.modules)
print('IMPORTED:' + ','.join(heavy), file=sys.stderr)
sys.exit(code)
"""

def probe(cmd:str, *args) -> tuple:
    "(exit status, stderr without the probe's line, the heavy modules the command imported)."
    r = subprocess.run([sys.executable, '-c', PROBE, str(BIN/cmd), *map(str, args)], capture_output=True, text=True,
                       env=command_env(), timeout=120)
    lines = r.stderr.splitlines()
    heavy = next(l for l in lines if l.startswith('IMPORTED:'))[len('IMPORTED:'):]
    return r.returncode, '\n'.join(l for l in lines if not l.startswith('IMPORTED:')), heavy

def test_help_in_a_fresh_process_is_fast():
    "`ragan-train --help` as a new process, best of three: under a second on a warm cache (8 s when it imported torch)."
    times = []
    for _ in range(3):
        t = time.perf_counter()
        r = subprocess.run([str(BIN/'ragan-train'), '--help'], capture_output=True, text=True, env=command_env(), timeout=120)
        times.append(time.perf_counter() - t)
        assert r.returncode == 0 and '--dataset' in r.stdout and '--resume' in r.stdout, r.stderr
    assert min(times) < 1.0, f"ragan-train --help took {min(times):.2f} s at best of 3"

@pytest.mark.parametrize('cmd', ['ragan-train', 'ragan-eval', 'ragan-bench'])
def test_help_imports_neither_torch_nor_fastai(cmd):
    rc, err, heavy = probe(cmd, '--help')
    assert rc == 0 and heavy == '', (rc, heavy, err)

BAD = [  # (command, arguments, what the one error line says); none of them may import torch
    ('ragan-train', ['--lr', '-1e-4'], 'lr must be a positive number, got -0.0001'),   # argparse took -1e-4 for an option
    ('ragan-train', ['--lr', 'nan'], 'lr must be a finite number, got nan'),
    ('ragan-train', ['--ema', 'inf'], 'ema (the half-life of the generator average, in images) must be a finite number, got inf'),
    ('ragan-train', ['--ema', '-100'], 'ema (the half-life of the generator average, in images) must be a positive number'),
    ('ragan-train', ['--betas', '-0.5', '0.9'], 'betas must be two numbers in [0, 1), got [-0.5, 0.9]'),
    ('ragan-train', ['--epochs', '0'], 'epochs must be a positive integer, got 0'),
    ('ragan-train', ['--bs', '-4'], 'bs must be a positive integer, got -4'),
    ('ragan-train', ['--seed', '-1'], 'seed must be a non-negative integer, got -1'),
    ('ragan-train', ['--r1', '-0.1'], 'r1 (a penalty weight γ) must be a number >= 0, got -0.1'),
    ('ragan-train', ['--loss', 'RaFooGAN'], "Unknown GAN loss 'RaFooGAN'"),
    ('ragan-train', ['--arch', 'resnet'], "unknown architecture 'resnet'"),
    ('ragan-train', ['--recipe', 'stylegan'], "unknown recipe 'stylegan'; choose one of paper, r3gan"),
    ('ragan-train', ['--augment', 'translation,flip'], "Unknown DiffAugment policy 'flip'"),
    ('ragan-train', ['--dataset', 'svhn'], "invalid choice: 'svhn'"),
    ('ragan-train', ['--nope'], 'unrecognized arguments: --nope'),
    ('ragan-eval', ['result/x', '--metrics', ''], '--metrics is empty'),
    ('ragan-eval', ['result/x', '--metrics', 'fdi'], "unknown metric 'fdi'"),
    ('ragan-eval', ['result/x', '--n', '1'], '--n must be >= 2, got 1'),
    ('ragan-eval', ['/no/such/run'], '/no/such/run does not exist'),
    ('ragan-bench', ['--seeds', '0,0'], '--seeds repeats 0: each seed is one run, give each once'),
    ('ragan-bench', ['--seeds', '0,one'], "--seeds takes comma-separated integers, got '0,one'"),
    ('ragan-bench', ['--lr', '-1e-4'], 'lr must be a positive number, got -0.0001'),
]

@pytest.mark.parametrize('cmd,args,msg', BAD, ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD])
def test_bad_value_is_answered_before_torch(cmd, args, msg, tmp_path):
    rc, err, heavy = probe(cmd, *args)
    assert rc == 2 and msg in err and 'Traceback' not in err, (rc, err)
    assert err.strip().splitlines()[-1].startswith(f'{cmd}: error: ') and err.count('error:') == 1, err
    assert heavy == '', f"{cmd} {' '.join(args)} imported {heavy} before refusing"

def test_api_and_command_say_the_same():
    "The Python API (`check_config`) and the command refuse a value with the same sentence: one check per argument."
    from ragan_nb.config import check_config
    for kw, args in ((dict(ema=float('inf')), ['--ema', 'inf']), (dict(lr=-1e-4), ['--lr', '-1e-4']),
                     (dict(loss='RaFooGAN'), ['--loss', 'RaFooGAN']), (dict(epochs=0), ['--epochs', '0'])):
        with pytest.raises(ValueError) as e: check_config(**kw)
        rc, err, _ = probe('ragan-train', *args)
        assert err.strip().splitlines()[-1] == f'ragan-train: error: {e.value}', (err, e.value)

def test_names_agree_with_the_library():
    "The name lists `ragan_nb.checks` keeps for the parser are the library's own."
    from ragan_nb import checks, data, toys, losses, models, augment, callbacks, config, bench, evaluate, classifier
    pairs = [(checks.DATASET_NAMES, data.DATASETS), (checks.TOY_NAMES, toys.TOYS), (checks.LOSS_BASES, tuple(losses.LOSSES)),
             (checks.REALNESS_NAME, losses.REALNESS), (checks.ARCH_NAMES, models.ARCHS), (checks.TOY_ARCH_NAMES, toys.TOY_ARCHS),
             (checks.AUGMENT_NAMES, tuple(augment.AUGMENTS)), (checks.PRECISION_NAMES, tuple(callbacks.PRECISIONS)),
             (checks.RECIPE_NAMES, tuple(config.RECIPES)), (checks.PROTOCOL_NAMES, tuple(bench.PROTOCOLS)),
             (checks.BENCH_LOSS_NAMES, tuple(bench.BENCH_LOSSES)), (checks.METRIC_NAMES, evaluate.METRICS),
             (checks.SPLIT_NAMES, config.SPLITS), (checks.SEED_LIMIT, config.MAX_SEED),
             (checks.CLASSIFIER_NAMES, classifier.CLASSIFIER_DATASETS)]
    for mine, theirs in pairs: assert mine == theirs, (mine, theirs)
