"""Speed of the Keypoint R-CNN on CPU: prints one JSON object.

    python benchmarks/keypoints.py [--threads 2] [--repeats 5]
    python benchmarks/keypoints.py --torchvision     # torchvision's keypointrcnn_resnet50_fpn, if installed

Workload: ResNet-50-FPN Keypoint R-CNN (torchvision's architecture: 2 classes, 17 keypoints, no masks,
frozen BatchNorm as when fine-tuning, randomly initialised with a fixed seed) on one 800x1333 image,
``torch.inference_mode``, float32, forced to return 100 detections (score threshold 0) so that the keypoint
branch always runs on 100 boxes. Reported: the median seconds of the whole call, and of the keypoint
placement alone (100 boxes' 17 heatmaps resampled to their boxes' sizes and their peaks found:
``heatmaps_to_keypoints``, or torchvision's own) on 100 fixed boxes of 40 to 340 pixels a side (the
resampling cost grows with the boxes' areas; both implementations get the same boxes and maps).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
from typing import Any

import torch

from inference import median_s, synthetic_image


def build(torchvision: bool) -> tuple[torch.nn.Module, Any]:
    """The model and its keypoint placement function ``(maps [D, K, S, S], boxes [D, 4]) -> ...``."""
    torch.manual_seed(0)
    if torchvision:
        from torchvision.models.detection import keypointrcnn_resnet50_fpn
        from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

        # Without weights torchvision builds BatchNorm: in evaluation mode the same per-channel affine.
        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0)
        return model, heatmaps_to_keypoints
    from maskrcnn.modeling import build_model
    from maskrcnn.modeling.keypoint_head import heatmaps_to_keypoints
    from maskrcnn.models import keypointrcnn_resnet50_fpn_config

    cfg = keypointrcnn_resnet50_fpn_config(pretrained=True)
    cfg.roi_heads.score_thresh = 0.0
    return build_model(cfg), heatmaps_to_keypoints


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torchvision", action="store_true", help="time torchvision's model instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, place = build(args.torchvision)
    model.eval()
    image = synthetic_image(0)
    with torch.inference_mode():
        (det,) = model([image])
        g = torch.Generator().manual_seed(0)
        corner = torch.rand(100, 2, generator=g) * 400
        boxes = torch.cat([corner, corner + 40 + torch.rand(100, 2, generator=g) * 300], dim=1)
        maps = torch.randn(len(boxes), 17, 56, 56, generator=g)
        result = {
            "implementation": "torchvision" if args.torchvision else "maskrcnn",
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "detections": len(det["boxes"]),
            "mean_box_size": [round(float(v), 1) for v in (boxes[:, 2:] - boxes[:, :2]).mean(0)],
            "call_s": median_s(lambda: model([image]), args.repeats),
            "keypoint_placement_s": median_s(lambda: place(maps, boxes), args.repeats),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
