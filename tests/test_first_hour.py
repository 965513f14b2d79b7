"""What a new user meets in the first hour (issue 25), beyond the commands' own tests: `make demo` and the README use
one folder, the tutorials' install cells run on Colab only, plots that count modes say of how many samples, and the
Python API checks its networks against the data at the top with the fix in the message."""
import json, re, subprocess, sys, warnings
from pathlib import Path
import pytest
import torch
from conftest import command_env

ROOT = Path(__file__).resolve().parents[1]

def test_make_demo_writes_where_the_readme_looks():
    "`make demo`'s run folder is the one the README's next command evaluates (it was result/<date-time>/…)."
    out = subprocess.run(['make', '-n', '-o', '.venv/.installed', 'demo'], capture_output=True, text=True, cwd=ROOT).stdout
    cmd = next(l for l in out.splitlines() if re.search(r'bin/ragan-train .*--out ', l))
    folder = re.search(r'--out (\S+)', cmd)[1]
    assert f"ragan-eval {folder}/fashion_mnist_RaLSGAN" in (ROOT/'README.md').read_text(), cmd

def test_colab_install_cells_run_on_colab_only():
    "A local 'Run all' of a tutorial must not reinstall ragan_nb from GitHub (offline: a red pip error)."
    cells = [(nb.name, ''.join(c['source'])) for nb in sorted((ROOT/'nbs'/'tutorials').glob('*.ipynb'))
             for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    installs = [(n, s) for n, s in cells if re.search(r'^\s*!pip install', s, re.M)]
    assert installs, 'no install cell found'
    for name, src in installs:
        assert "if 'google.colab' in sys.modules:" in src and re.search(r'^\s+!pip install', src, re.M), (name, src)

RECORD = """
import sys, json
import ragan_nb.train as t, ragan_nb.evaluate as e
titles = []
t.save_scatter = e.save_scatter = lambda fake, real, fn, title='': titles.append(title)
from ragan_nb.runs import load_generator
learn = t.train(sys.argv[1], dataset='grid25', n_images=1024, bs=128, epochs=1, device='cpu', quiet=True)
e.evaluate(load_generator(learn.run_dir)[0], 'grid25', n=3000, device='cpu', scatter='x.png')
print(json.dumps(titles))
"""

def test_mode_plots_say_how_many_samples(tmp_path):
    "The epoch scatter counts 1,000 samples, ragan-eval's 3,000 (1,000 drawn): each title says so, so 16/25 and 21/25 agree."
    r = subprocess.run([sys.executable, '-c', RECORD, str(tmp_path)], capture_output=True, text=True, env=command_env(),
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    epoch, ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert epoch.endswith('(1,000 samples)') and ev.endswith('(3,000 samples, 1,000 shown)'), (epoch, ev)

def test_learner_checks_the_networks_against_the_data():
    "Wrong noise size, image size or channels: one ValueError naming the shapes and the fix, not torch's RuntimeError."
    from ragan_nb.gandata import gan_dls
    from ragan_nb.models import gan_models
    from ragan_nb.learner import ragan_learner
    imgs = torch.zeros(16, 1, 32, 32)
    G, C = gan_models('dcgan', 32, 1, 128)
    cases = [(gan_dls(imgs, bs=8, noise_size=(100, 1, 1), device='cpu'), G, C, 'the generator does not take noise of shape (100, 1, 1)'),
             (gan_dls(torch.zeros(16, 1, 64, 64), bs=8, noise_size=(128, 1, 1), device='cpu'), G, C,
              'the generator makes samples of shape (1, 32, 32), the data\'s are (1, 64, 64)'),
             (gan_dls(torch.zeros(16, 3, 32, 32), bs=8, noise_size=(128, 1, 1), device='cpu'), G, C,
              'the generator makes samples of shape (1, 32, 32), the data\'s are (3, 32, 32)'),
             (gan_dls(imgs, bs=8, noise_size=(128, 1, 1), device='cpu'), G, gan_models('dcgan', 32, 3, 128)[1],
              "the critic does not take the data's samples of shape (1, 32, 32)")]
    for dls, g, c, msg in cases:
        with pytest.raises(ValueError) as e: ragan_learner(dls, g, c)
        assert msg in str(e.value) and '\n' not in str(e.value), str(e.value)

def test_learner_guards_against_nan_by_default():
    "A critic that turns NaN stops the fit under `ragan_learner` too (it trained on before), with a warning; off on request."
    from ragan_nb.gandata import gan_dls
    from ragan_nb.toys import toy_data, mlp_generator, mlp_critic
    from ragan_nb.learner import ragan_learner
    def learner(**kw):
        torch.manual_seed(0)
        C = mlp_critic(8)
        with torch.no_grad(): C[-1].bias.fill_(float('nan'))   # every score NaN from the first step
        return ragan_learner(gan_dls(toy_data('grid9', 64, seed=0), bs=8, noise_size=2, seed=0, device='cpu'),
                             mlp_generator(2, 8), C, 'RaSGAN', **kw)
    learn = learner()
    with warnings.catch_warnings(record=True) as w, learn.no_bar(), learn.no_logging():
        warnings.simplefilter('always'); learn.fit(2)
    assert learn.nonfinite is not None and learn.nonfinite['epoch'] == 0 and learn.nonfinite['iter'] == 0, learn.nonfinite
    assert any('training stopped: the critic loss became nan' in str(x.message) for x in w), [str(x.message) for x in w]
    free = learner(nonfinite_guard=False)
    with free.no_bar(), free.no_logging(): free.fit(1)
    assert free.train_iter == 8   # every step ran
