"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.modeling import MaskRCNN, build_model
from tests.modeling.helpers import tiny_config


@pytest.fixture
def tiny_model() -> MaskRCNN:
    torch.manual_seed(0)
    return build_model(tiny_config())
