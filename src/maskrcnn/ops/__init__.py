"""Detection operators in pure PyTorch, with torchvision's names and signatures.

Everything here runs on CPU and CUDA, keeps the input's dtype and device, accepts empty inputs, and
needs no compiled extension.
"""

from maskrcnn.ops.anchors import AnchorGenerator
from maskrcnn.ops.box_coder import DEFAULT_BBOX_XFORM_CLIP, BoxCoder
from maskrcnn.ops.boxes import (
    box_area,
    box_convert,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    clip_boxes_to_image,
    pairwise_intersection,
    remove_small_boxes,
)
from maskrcnn.ops.masks import (
    MASK_THRESHOLD,
    binarize_masks,
    expand_boxes,
    expand_masks,
    masks_to_boxes,
    paste_mask_in_image,
    paste_masks_cropped,
    paste_masks_in_image,
    paste_masks_thresholded,
    polygons_to_mask,
    rle_area,
    rle_decode,
    rle_encode,
    rle_to_crops,
)
from maskrcnn.ops.matcher import Matcher
from maskrcnn.ops.nms import batched_nms, nms
from maskrcnn.ops.poolers import LevelMapper, MultiScaleRoIAlign
from maskrcnn.ops.roi_align import convert_boxes_to_roi_format, roi_align
from maskrcnn.ops.sampler import BalancedPositiveNegativeSampler

__all__ = [
    "DEFAULT_BBOX_XFORM_CLIP",
    "MASK_THRESHOLD",
    "AnchorGenerator",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "LevelMapper",
    "Matcher",
    "MultiScaleRoIAlign",
    "batched_nms",
    "binarize_masks",
    "box_area",
    "box_convert",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "clip_boxes_to_image",
    "convert_boxes_to_roi_format",
    "expand_boxes",
    "expand_masks",
    "masks_to_boxes",
    "nms",
    "pairwise_intersection",
    "paste_mask_in_image",
    "paste_masks_cropped",
    "paste_masks_in_image",
    "paste_masks_thresholded",
    "polygons_to_mask",
    "remove_small_boxes",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_to_crops",
    "roi_align",
]
