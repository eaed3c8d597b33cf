"""Evaluation of an imperfect oracle on rectangles, for ``test_distributed``: imported there for the
one-process run, and run by ``torchrun -m tests.engine.distributed_evaluation OUT`` for the distributed
one (rank R writes what it got to ``OUT.R``)."""

import json
import sys

import torch
from torch import nn

from maskrcnn.engine.distributed import process_group
from maskrcnn.engine.evaluation import Evaluation, evaluate
from tests.engine.evaluation.helpers import Rectangles, rect_mask

# (label, (y0, y1, x0, x1)) per image, in a 40 x 50 image; image 2 is empty, image 4 unreadable.
SCENE = [
    [(1, (5, 25, 5, 25)), (2, (10, 30, 30, 45))],
    [(1, (8, 36, 10, 40))],
    [],
    [(2, (2, 20, 2, 22)), (1, (20, 38, 25, 48))],
    [(1, (5, 15, 5, 45))],
    [(2, (10, 35, 10, 30))],
    [(1, (0, 40, 0, 20)), (2, (0, 40, 25, 50))],
]
UNREADABLE = {4}


class Imperfect(nn.Module):
    """Finds each rectangle shifted right by 0..3 pixels (so the IoU varies), scores falling with the
    image and the object, and adds a false positive to every third image."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in images:
            index = round(float(image[0, 0, 0]) * 10)  # Rectangles fill image i with i / 10
            found = [
                (label, rect, 0.9 - 0.1 * k - 0.05 * index) for k, (label, rect) in enumerate(SCENE[index])
            ]
            found = [
                (lab, (y0, y1, x0 + (index + k) % 4, min(x1 + (index + k) % 4, 50)), s)
                for k, (lab, (y0, y1, x0, x1), s) in enumerate(found)
            ]
            if index % 3 == 0:
                found.append((1, (0, 10, 0, 10), 0.6))
            masks = (
                torch.stack([torch.from_numpy(rect_mask(r)).float()[None] for _, r, _ in found])
                if found
                else torch.zeros(0, 1, 40, 50)
            )
            out.append(
                {
                    "boxes": torch.tensor(
                        [[x0, y0, x1, y1] for _, (y0, y1, x0, x1), _ in found], dtype=torch.float32
                    ).reshape(-1, 4),
                    "labels": torch.tensor([lab for lab, _, _ in found], dtype=torch.int64),
                    "scores": torch.tensor([s for _, _, s in found], dtype=torch.float32),
                    "masks": masks,
                }
            )
        return out


def run() -> Evaluation:
    return evaluate(Imperfect(), Rectangles(SCENE, bad=UNREADABLE), batch_size=2, progress=False)


def summary(evaluation: Evaluation) -> dict:
    """What must not depend on the number of processes (JSON-ready)."""
    return {
        "metrics": evaluation.metrics,
        "per_class": evaluation.per_class,
        "results": evaluation.results,
        "skipped": evaluation.skipped,
        "num_images": evaluation.num_images,
        "confusion": evaluation.confusion.tolist(),
    }


if __name__ == "__main__":
    # Every rank writes what it received: rank 0 everything, the others all but the results.
    with process_group("cpu") as group:
        evaluation = run()
        with open(f"{sys.argv[1]}.{group.rank}", "w") as f:
            json.dump(summary(evaluation), f)
