"""The samples run as documented."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_custom_dataset_sample(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("cat 1 1 10 1 10 8\ndog 12 2 20 2 20 12 12 12\n")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "b.txt").write_text("")
    result = subprocess.run(
        [sys.executable, str(ROOT / "samples" / "custom_dataset.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "images: 2 (1 without objects)" in result.stdout
    assert "instances per class: cat 1, dog 1" in result.stdout
    assert "result: OK, trainable" in result.stdout
