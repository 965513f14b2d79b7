"""The CPU rehearsal of bench/gpu_suite.py, the one prepared GPU command: `--device cpu --tiny` runs every job at a toy
budget. A first call with a short deadline must stop cleanly with part of the queue done; a second call, given the first
one's files, must finish the rest; each call's output folder must be what the remote runner can send back (at most 8
files of at most 16 MiB); `--collect` must put them where `ragan_nb.gpu_results` reads them."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT/'bench'/'gpu_suite.py'

def _data_found() -> bool:
    "Fashion-MNIST and the MNIST test split, found the way the library finds them (no download)."
    code = ("from ragan_nb.data import find_dataset\n"
            "find_dataset('fashion_mnist', download=False); find_dataset('mnist', split='test', download=False)")
    return subprocess.run([sys.executable, '-c', code], capture_output=True, env=_env(), timeout=300).returncode == 0

def _env() -> dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}

def _suite(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), '--device', 'cpu', '--tiny', '--quiet', *map(str, args)],
                          capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)

@pytest.fixture(scope='module')
def calls(tmp_path_factory):
    if not _data_found():
        msg = 'Fashion-MNIST or the MNIST test split is not found (make data; RAGAN_MNIST)'
        if os.environ.get('CI'): pytest.fail(msg)   # CI has both: .ci/run installs the one and points at the other
        pytest.skip(msg)
    tmp = tmp_path_factory.mktemp('gpu_suite')
    t0 = time.monotonic()
    first = _suite('--out', tmp/'out1', '--deadline', 30)
    t1 = time.monotonic()
    second = _suite('--out', tmp/'out2', '--results', tmp/'out1', '--carry', tmp/'carry', '--deadline', 150)
    t2 = time.monotonic()
    return tmp, first, second, t1 - t0, t2 - t1

def _state(out:Path) -> dict: return json.loads((out/'queue.json').read_text())

def test_first_call_stops_at_its_deadline(calls):
    tmp, first, _, dt, _ = calls
    assert first.returncode == 0, first.stderr[-3000:]
    assert dt < 30 + 15, dt   # the deadline, plus starting Python and stopping a worker
    st = _state(tmp/'out1')
    done = [u for u, s in st['units'].items() if s['status'] == 'done']
    assert done and len(done) < len(st['units']), st['units']
    assert 'speed/dcgan' in done   # the first unit of the queue
    assert 'preflight: torch = ' in (tmp/'out1'/'suite.log').read_text()

def test_second_call_finishes_the_queue(calls):
    tmp, first, second, _, dt = calls
    assert second.returncode == 0, second.stderr[-3000:]
    st = _state(tmp/'out2')
    assert all(s['status'] == 'done' for s in st['units'].values()), {u: s for u, s in st['units'].items() if s['status'] != 'done'}
    assert len(st['calls']) == 2 and st['calls'][1]['facts']['torch']
    first_done = {u for u, s in _state(tmp/'out1')['units'].items() if s['status'] == 'done'}
    assert not first_done & set(st['calls'][1]['finished'])   # nothing done twice
    assert all(j['done'] == j['units'] for j in st['jobs'].values())
    assert dt < 120, dt

def test_outputs_come_back(calls):
    "Each output folder holds at most 8 plain files of at most 16 MiB, and the CSVs hold every job's rows."
    import numpy as np, pandas as pd
    tmp = calls[0]
    for out in (tmp/'out1', tmp/'out2'):
        files = list(out.iterdir())
        assert len(files) <= 8 and all(f.is_file() and f.stat().st_size <= 16 * 2**20 for f in files), files
    out = tmp/'out2'
    runs = pd.read_csv(out/'runs.csv')
    assert set(runs.job) == {'fmnist', 'stacked', 'toys'} and (runs.status == 'ok').all()
    fm = runs[runs.job == 'fmnist']
    assert set(fm.loss) == {'r3gan', 'RaLSGAN'} and (fm.cfd > 0).all() and set(fm.generator) == {'EMA', 'raw'}
    st = runs[runs.job == 'stacked']
    assert set(st.loss) == {'RaSGAN', 'RpSGAN+R1+R2'} and st.modes.between(1, 1000).all() and (st.n_modes == 1000).all()
    toy = runs[runs.job == 'toys']
    assert (toy.protocol == 'pacgan').all() and toy.modes.between(0, 25).all()
    speed = pd.read_csv(out/'speed.csv')
    assert {'dcgan', 'toy', 'fashion_mnist ragan-train'} <= set(speed.model)
    assert {'plain', 'fp32', 'r1r2_approx'} <= set(speed.row) and (speed.dropna(subset=['ms_median']).ms_median > 0).all()
    thr = pd.read_csv(out/'throughput.csv')
    assert sorted(thr.n_jobs) == [1, 2] and (thr.aggregate_batches_per_s > 0).all()
    keys = {}
    for f in sorted(tmp.glob('out*/samples_*.npz')):
        with np.load(f) as z: keys.update({k: z[k].shape for k in z.files if z[k].dtype == np.uint8})
    assert keys == {'fmnist__r3gan__seed0': (200, 1, 32, 32), 'fmnist__RaLSGAN__seed0': (200, 1, 32, 32)}, keys

def test_collect_and_read(calls, tmp_path):
    "`--collect` copies a call's files into a results folder, the samples into its samples/ folder; the reader finds them."
    tmp = calls[0]
    res = tmp_path/'gpu'
    for out in ('out1', 'out2'):
        p = subprocess.run([sys.executable, str(SUITE), '--collect', str(tmp/out), '--results', str(res), '--carry', str(tmp_path/'carry')],
                           capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-2000:]
    assert {'queue.json', 'runs.csv', 'speed.csv', 'throughput.csv', 'suite.log'} <= {f.name for f in res.iterdir()}
    assert sorted(f.name for f in (res/'samples').iterdir()) == ['fmnist__RaLSGAN__seed0.npz', 'fmnist__r3gan__seed0.npz']
    from ragan_nb.gpu_results import gpu_tables, queued_lines
    t = gpu_tables(res)
    assert len(t['fmnist']) == 2 and len(t['stacked']) == 2 and len(t['toys']) == 1 and len(t['speed'])
    assert queued_lines(res) == []
    # the local step after a call: score a returned sample file with ragan-eval --samples, as the results page reads it
    (res/'scores').mkdir()
    p = subprocess.run([str(Path(sys.executable).parent/'ragan-eval'), '--samples', str(res/'samples'/'fmnist__r3gan__seed0.npz'),
                        '--dataset', 'fashion_mnist', '--metrics', 'cfd', '--n-real', '500', '--device', 'cpu', '--quiet',
                        '--out', str(res/'scores'/'fmnist__r3gan__seed0.json')], capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    fm = gpu_tables(res)['fmnist'].set_index('loss')
    assert abs(json.loads((res/'scores'/'fmnist__r3gan__seed0.json').read_text())['cfd'] - fm.cfd['r3gan']) < 1e-6 * fm.cfd['r3gan']
