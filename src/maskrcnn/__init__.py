"""maskrcnn: instance segmentation with Mask R-CNN in pure PyTorch."""

__version__ = "0.1.0"
