"""`python -m mmpiqa` runs the command line (cli.py is not a script: run as a file it would put mmpiqa/ first on
sys.path, where its modules would shadow the standard library's)."""

import os
import subprocess
import sys
from pathlib import Path

import mmpiqa


def test_python_m_mmpiqa_is_the_command():
    env = dict(os.environ)  # the same mmpiqa as this test imports, installed or not
    env["PYTHONPATH"] = os.pathsep.join([str(Path(mmpiqa.__file__).parents[1]), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "mmpiqa", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: mmpiqa") and "demo" in done.stdout and "data" in done.stdout
