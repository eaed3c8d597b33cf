"""Choosing the device: names, availability, and the messages for the ones that are not there."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.engine.device import resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda:99")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="mps is not available"):
            resolve_device("mps")
