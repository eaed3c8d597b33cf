import subprocess
import sys

import torch

import maskrcnn
from maskrcnn.cli import main


def test_version_and_help(capsys):
    assert main([]) == 0
    assert "info" in capsys.readouterr().out
    result = subprocess.run(
        [sys.executable, "-m", "maskrcnn", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"maskrcnn {maskrcnn.__version__}"


def test_info_reports_torch(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert ("cuda         available" in out) == torch.cuda.is_available()
