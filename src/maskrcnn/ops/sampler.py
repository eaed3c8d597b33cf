"""Sample a fixed-size, class-balanced minibatch of anchors or proposals per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BalancedPositiveNegativeSampler"]


class BalancedPositiveNegativeSampler:
    """Picks up to ``batch_size_per_image`` elements per image, at most ``positive_fraction`` positive.

    Positives are taken first (at random when there are more than the quota); negatives fill the rest
    of the batch, as many as exist. Ignored elements (label < 0) are never sampled.

    Args:
        batch_size_per_image: elements sampled per image (256 for the RPN, 512 for the box head).
        positive_fraction: largest share of positives (0.5 for the RPN, 0.25 for the box head).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image < 0 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"BalancedPositiveNegativeSampler: need batch_size_per_image >= 0 and positive_fraction in "
                f"[0, 1], got {batch_size_per_image}, {positive_fraction}"
            )
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __repr__(self) -> str:
        return (
            f"BalancedPositiveNegativeSampler(batch_size_per_image={self.batch_size_per_image}, "
            f"positive_fraction={self.positive_fraction})"
        )

    def __call__(
        self, matched_idxs: Sequence[Tensor], generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Sample.

        Args:
            matched_idxs: per image, ``int[N_i]`` labels: ``>= 1`` positive, ``0`` negative, ``< 0`` ignored.
            generator: random generator (default: torch's global one).

        Returns:
            ``(pos, neg)``: per image, ``uint8[N_i]`` masks of the sampled positives and negatives.
        """
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos_idx = positive[self._perm(positive.numel(), num_pos, labels.device, generator)]
            neg_idx = negative[self._perm(negative.numel(), num_neg, labels.device, generator)]
            pos_mask = torch.zeros_like(labels, dtype=torch.uint8)
            neg_mask = torch.zeros_like(labels, dtype=torch.uint8)
            pos_mask[pos_idx] = 1
            neg_mask[neg_idx] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks

    @staticmethod
    def _perm(n: int, k: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        # A generator lives on one device; draw on its device and move the indices.
        gen_device = generator.device if generator is not None else device
        return torch.randperm(n, device=gen_device, generator=generator)[:k].to(device)
