"""The Mask R-CNN model, one stage per module (see ``mask_rcnn.py`` for how they connect)."""

from maskrcnn.modeling.backbone import BasicBlock, Bottleneck, ResNet, resnet
from maskrcnn.modeling.box_head import ConvFCHead, FastRCNNPredictor, TwoMLPHead, fastrcnn_loss
from maskrcnn.modeling.fpn import FEATURE_NAMES, BackboneWithFPN, FeaturePyramidNetwork
from maskrcnn.modeling.layers import ConvNormAct, FrozenBatchNorm2d
from maskrcnn.modeling.mask_head import MaskRCNNHeads, MaskRCNNPredictor, maskrcnn_loss
from maskrcnn.modeling.mask_rcnn import MaskRCNN, build_model, check_targets
from maskrcnn.modeling.roi_heads import RoIHeads
from maskrcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from maskrcnn.modeling.transform import RCNNTransform

__all__ = [
    "FEATURE_NAMES",
    "BackboneWithFPN",
    "BasicBlock",
    "Bottleneck",
    "ConvFCHead",
    "ConvNormAct",
    "FastRCNNPredictor",
    "FeaturePyramidNetwork",
    "FrozenBatchNorm2d",
    "MaskRCNN",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "RCNNTransform",
    "RPNHead",
    "RegionProposalNetwork",
    "ResNet",
    "RoIHeads",
    "TwoMLPHead",
    "build_model",
    "check_targets",
    "fastrcnn_loss",
    "maskrcnn_loss",
    "resnet",
]
