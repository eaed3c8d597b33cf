"""The set-up script keeps a torch that is already installed instead of installing another one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.platform == "win32", reason="the set-up script is bash")
def test_bootstrap_keeps_the_callers_torch(tmp_path):
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "bootstrap.sh"), str(venv)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "keeping torch" in result.stdout
    assert "installing torch" not in result.stdout
    probe = "import torch, maskrcnn; print(torch.__file__); print(maskrcnn.__file__)"
    torch_file, package_file = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    import torch

    assert torch_file == torch.__file__  # the very same installation, not a copy or a new download
    assert Path(package_file).is_relative_to(ROOT / "src")
    assert not list((venv / "lib").glob("python*/site-packages/torch"))
