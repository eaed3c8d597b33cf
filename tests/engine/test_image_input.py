"""to_image_tensor: every image form a user may hold, and the errors for the ones it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.engine.image_input import to_image_tensor


def test_to_image_tensor_forms():
    grey = np.full((4, 5), 255, np.uint8)
    assert torch.equal(to_image_tensor(grey), torch.ones(3, 4, 5))
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 7
    image = to_image_tensor(rgba)
    assert image.shape == (3, 4, 5)
    assert image[0].eq(1).all()
    assert image[1:].eq(0).all()
    assert to_image_tensor(Image.new("L", (5, 4), 51)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        to_image_tensor(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="uint8"):
        to_image_tensor(np.zeros((4, 5, 3), np.int32))
    with pytest.raises(TypeError):
        to_image_tensor([1, 2, 3])  # type: ignore[arg-type]
