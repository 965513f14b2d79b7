"""Shared by the tests that run the installed commands (`ragan-train`, `ragan-eval`).

A fresh Python spends ~8 s (much more on a loaded machine) importing torch and fastai before a command even reads
its arguments. `commands` runs each command in a child forked from the server of tests/test_safety.py (one process
that imported the installed commands once; the child runs the installed script itself as `__main__`, with its own
argv, cwd, environment and stdio), so a command costs what it computes. `RAGAN_TEST_FRESH_PROCESS=1` runs every
command as a fresh process instead. A few tests still start the installed scripts as fresh processes on purpose
(the entry points themselves, a run killed with SIGKILL).
"""
import os, subprocess
from pathlib import Path

import pytest

import test_safety as safety   # its fork server (`python tests/test_safety.py --serve`) and client

# The slowest files first (minutes each on the 2-core test machine), the rest in their usual order: `make pytest` hands
# whole files to two xdist workers in this order (--dist loadfile --no-loadscope-reorder), so neither waits at the end.
SLOW_FIRST = ('test_layout.py', 'test_train_cli.py', 'test_docs_site.py', 'test_eval_cli.py')

def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: a file's tests keep their order

def command_env(env:dict|None=None) -> dict:
    "This process's environment, one thread per command, and `env` on top."
    # not COLUMNS and LINES: pytest-xdist's workers start with COLUMNS=80 LINES=24 in their environment, and argparse
    # would wrap its usage lines at 80 columns, not as for a command whose output goes to a file or a pipe
    e = {k: v for k, v in os.environ.items() if k not in ('COLUMNS', 'LINES')}
    return {**e, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', **(env or {})}

class Commands(safety.Commands):
    "test_safety's `Commands` (its fork server), each command in `command_env(env)`, the caller's environment."
    preexec = None
    def env(self, cwd:Path, extra:dict|None=None) -> dict: return command_env(extra)
    def __call__(self, cmd:str, *args, cwd:str|Path, env:dict|None=None, timeout:float=600) -> subprocess.CompletedProcess:
        return super().__call__(cmd, *args, cwd=cwd, env=env, timeout=timeout)

@pytest.fixture(scope='module')
def commands(tmp_path_factory):
    "Run an installed command: `commands('ragan-train', *args, cwd=…, env=…)` -> a `CompletedProcess` with text output."
    c = Commands(tmp_path_factory.mktemp('commands'))
    yield c
    c.close()
