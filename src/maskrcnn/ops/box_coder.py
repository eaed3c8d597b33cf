"""Box regression targets: encode boxes relative to reference boxes and decode them back.

The parameterisation is the one of R-CNN and every Mask R-CNN implementation since:
``dx = wx * (gx - px) / pw``, ``dy = wy * (gy - py) / ph``, ``dw = ww * log(gw / pw)``,
``dh = wh * log(gh / ph)`` on centres and sizes. The weights scale the targets to roughly unit variance:
``(1, 1, 1, 1)`` for the RPN and ``(10, 10, 5, 5)`` for the box head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["DEFAULT_BBOX_XFORM_CLIP", "BoxCoder"]

# Largest log-size change decoded: a box may grow at most 1000/16 = 62.5x, which keeps exp() finite
# when an untrained head predicts a large dw/dh.
DEFAULT_BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes ``(x1, y1, x2, y2)`` boxes as ``(dx, dy, dw, dh)`` deltas and decodes them back.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of the four deltas.
        bbox_xform_clip: upper bound applied to ``dw`` and ``dh`` before ``exp`` when decoding.
    """

    def __init__(self, weights: Sequence[float], bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP) -> None:
        if len(weights) != 4:
            raise ValueError(f"BoxCoder: weights must have 4 values (wx, wy, ww, wh), got {tuple(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = float(bbox_xform_clip)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.4f})"

    def encode(self, reference_boxes: Sequence[Tensor], proposals: Sequence[Tensor]) -> list[Tensor]:
        """Per-image :meth:`encode_single`.

        Args:
            reference_boxes: per image, ``[N_i, 4]`` target (ground-truth) boxes.
            proposals: per image, ``[N_i, 4]`` boxes the targets are expressed relative to.

        Returns:
            per image, ``[N_i, 4]`` deltas.
        """
        sizes = [len(b) for b in reference_boxes]
        if not sizes:
            return []
        targets = self.encode_single(torch.cat(list(reference_boxes)), torch.cat(list(proposals)))
        return list(targets.split(sizes, 0))

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas that move each proposal onto its reference box.

        Args:
            reference_boxes: ``[N, 4]`` target boxes.
            proposals: ``[N, 4]`` boxes with positive width and height.

        Returns:
            ``[N, 4]`` ``(dx, dy, dw, dh)`` in the dtype of ``reference_boxes``.
        """
        dtype = reference_boxes.dtype
        proposals = proposals.to(dtype)
        wx, wy, ww, wh = self.weights

        ex_widths = proposals[:, 2] - proposals[:, 0]
        ex_heights = proposals[:, 3] - proposals[:, 1]
        ex_ctr_x = proposals[:, 0] + 0.5 * ex_widths
        ex_ctr_y = proposals[:, 1] + 0.5 * ex_heights

        gt_widths = reference_boxes[:, 2] - reference_boxes[:, 0]
        gt_heights = reference_boxes[:, 3] - reference_boxes[:, 1]
        gt_ctr_x = reference_boxes[:, 0] + 0.5 * gt_widths
        gt_ctr_y = reference_boxes[:, 1] + 0.5 * gt_heights

        dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
        dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
        dw = ww * torch.log(gt_widths / ex_widths)
        dh = wh * torch.log(gt_heights / ex_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, rel_codes: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        """Decode deltas predicted for the boxes of several images.

        Args:
            rel_codes: ``[sum N_i, 4 * K]`` deltas (``K`` = 1 for class-agnostic, else one per class).
            boxes: per image, ``[N_i, 4]`` reference boxes.

        Returns:
            ``[sum N_i, K, 4]`` decoded boxes.
        """
        concat_boxes = torch.cat(list(boxes)) if len(boxes) else rel_codes.new_zeros((0, 4))
        total = concat_boxes.shape[0]
        codes_per_box = rel_codes.numel() // total if total else rel_codes.shape[-1]
        pred = self.decode_single(rel_codes.reshape(total, codes_per_box), concat_boxes)
        return pred.reshape(total, codes_per_box // 4, 4)

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas to reference boxes.

        Args:
            rel_codes: ``[N, 4 * K]`` deltas ``(dx, dy, dw, dh)`` repeated for ``K`` classes.
            boxes: ``[N, 4]`` reference boxes.

        Returns:
            ``[N, 4 * K]`` xyxy boxes in the dtype of ``rel_codes``.
        """
        boxes = boxes.to(rel_codes.dtype)
        wx, wy, ww, wh = self.weights

        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = (rel_codes[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (rel_codes[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])

        pred = torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2
        )
        return pred.flatten(1)
