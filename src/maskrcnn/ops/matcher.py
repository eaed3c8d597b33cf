"""Assign each prediction (anchor or proposal) to a ground-truth box, or to background."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Matcher"]


class Matcher:
    """Matches predictions to ground truth by IoU, torchvision's / Detectron's ``Matcher``.

    Each prediction takes the ground truth it overlaps most. If that IoU is below ``low_threshold`` the
    prediction is background (``BELOW_LOW_THRESHOLD``); between the thresholds it is ignored
    (``BETWEEN_THRESHOLDS``), unless ``low_threshold == high_threshold``.

    ``allow_low_quality_matches`` (the RPN setting) also matches, for every ground truth, the
    predictions that tie for its highest IoU, even below the thresholds, so that no object is left
    without an anchor.

    Args:
        high_threshold: IoU at or above which a prediction is matched.
        low_threshold: IoU below which a prediction is background.
        allow_low_quality_matches: see above.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"Matcher: low_threshold {low_threshold} > high_threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __repr__(self) -> str:
        return (
            f"Matcher(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches})"
        )

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """Match.

        Args:
            match_quality_matrix: ``[M, N]`` IoU of ``M`` ground-truth boxes with ``N`` predictions.

        Returns:
            ``int64[N]``: the matched ground-truth index in ``[0, M)``, or ``BELOW_LOW_THRESHOLD`` /
            ``BETWEEN_THRESHOLDS``. With no ground truth (an image without objects) every prediction is
            background.
        """
        m, n = match_quality_matrix.shape
        if m == 0:
            return torch.full(
                (n,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=match_quality_matrix.device
            )
        if n == 0:
            return torch.empty(0, dtype=torch.int64, device=match_quality_matrix.device)

        matched_vals, matches = match_quality_matrix.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None
        below = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if all_matches is not None:
            self.set_low_quality_matches_(matches, all_matches, match_quality_matrix)
        return matches

    @staticmethod
    def set_low_quality_matches_(matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
        """Restore, in place, the match of every prediction that ties for some ground truth's best IoU.

        Such a prediction gets its own best ground truth (``all_matches``), which is not necessarily the
        ground truth it was the best for: the behaviour of the reference implementations.
        """
        highest_per_gt = match_quality_matrix.max(dim=1).values
        pred_idx = torch.where(match_quality_matrix == highest_per_gt[:, None])[1]
        matches[pred_idx] = all_matches[pred_idx]
