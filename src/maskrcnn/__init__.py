"""maskrcnn: instance segmentation with Mask R-CNN in pure PyTorch.

The command line is ``maskrcnn`` (``python -m maskrcnn``); in Python, ``maskrcnn.Predictor`` runs a trained
model, ``maskrcnn.models`` builds models, ``maskrcnn.data`` reads datasets.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Detections", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``import maskrcnn`` (e.g. for the version) stays instant.
    if name in ("Predictor", "Detections"):
        from maskrcnn.engine import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'maskrcnn' has no attribute {name!r}")
