"""Named weights: the published checkpoints people start from, by a short name.

``--weights coco`` (or ``maskrcnn_resnet50_fpn(weights="coco")``) names torchvision's COCO Mask R-CNN;
``imagenet-r50`` its ImageNet ResNet-50 for the backbone. Each entry records the file's published name,
URL and SHA-256, and what it holds. :mod:`maskrcnn.weights.cache` finds or downloads the file.

Where the facts come from: the URLs, the file names, the number of parameters, the accuracy and the file
sizes (MiB) are those of torchvision's weights documentation (docs.pytorch.org/vision, the models page:
``MaskRCNN_ResNet50_FPN_Weights.COCO_V1``, ``MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1``,
``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1``,
``ResNet18/34/50/101_Weights.IMAGENET1K_V1``, ``ResNeXt50_32X4D_Weights.IMAGENET1K_V1``,
``ResNeXt101_32X8D_Weights.IMAGENET1K_V1``). torchvision publishes only the first 8 hex digits of each
file's SHA-256 (the suffix of the file name, which its ``check_hash`` compares); the full digests below
are those that other projects pin for the same files, each consistent with torchvision's prefix. For
the two ResNeXt files no full digest was found, so the published prefix is what is checked.

The ImageNet entries are the ``IMAGENET1K_V1`` weights: the ones torchvision's detection builders use
for ``weights_backbone`` (the paper-like training recipe); the later ``V2`` recipes are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskrcnn.weights.coco import COCO_CLASS_NAMES

__all__ = ["REGISTRY", "WeightsEntry", "find", "register"]

_TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class WeightsEntry:
    """One named checkpoint.

    Attributes:
        name: the short name (``coco``); matched case-insensitively, as are ``aliases`` and ``file_name``.
        file_name: the published file name, also its name in the cache.
        url: where it is downloaded from.
        sha256: its SHA-256 in hex: the full digest, or the published prefix (8 or more digits).
        kind: ``detection`` (a whole Mask R-CNN) or ``backbone`` (an ImageNet classifier's body).
        architecture: torchvision's builder name (``maskrcnn_resnet50_fpn_v2``, ``resnet50``).
        classes: the foreground class names of a detection model, in label order (label 1 first).
        num_classes: outputs of the classifier (91 for COCO detection, with the background; 1000 for
            ImageNet).
        size_mb: the file's size in MiB, as published.
        summary: what it scores (for ``maskrcnn weights list``).
        aliases: other names that select it.
    """

    name: str
    file_name: str
    url: str
    sha256: str
    kind: str
    architecture: str
    num_classes: int
    size_mb: float
    summary: str
    classes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every name that selects this entry (lower case): the name, the aliases, the file name and its
        stem."""
        stem = self.file_name.rsplit(".", 1)[0]
        return tuple(n.lower() for n in (self.name, *self.aliases, self.file_name, stem))


def _torchvision(
    name: str,
    file_name: str,
    sha256: str,
    *,
    kind: str,
    architecture: str,
    size_mb: float,
    summary: str,
    aliases: tuple[str, ...] = (),
    classes: tuple[str, ...] | None = None,
) -> WeightsEntry:
    detection = kind == "detection"
    if classes is None:
        classes = COCO_CLASS_NAMES if detection else ()
    return WeightsEntry(
        name=name,
        file_name=file_name,
        url=_TORCHVISION + file_name,
        sha256=sha256,
        kind=kind,
        architecture=architecture,
        num_classes=len(classes) + 1 if detection else 1000,
        size_mb=size_mb,
        summary=summary,
        classes=classes,
        aliases=aliases,
    )


REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        _torchvision(
            "coco",
            "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            "bf2d0c1efbc936eeee2bc95a48e80ebc86b891f61b0106485937fc29f9315fc0",
            kind="detection",
            architecture="maskrcnn_resnet50_fpn",
            size_mb=169.84,
            summary="COCO 2017: box AP 37.9, mask AP 34.6 (44.4M parameters)",
            aliases=("coco-v1", "maskrcnn_resnet50_fpn"),
        ),
        _torchvision(
            "coco-v2",
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            "73cbd0190fcbe3ba339921fbce2c3a0b6bb9126c9a133c85e43a2a8e060a109e",
            kind="detection",
            architecture="maskrcnn_resnet50_fpn_v2",
            size_mb=177.22,
            summary="COCO 2017: box AP 47.4, mask AP 41.8 (46.4M parameters)",
            aliases=("maskrcnn_resnet50_fpn_v2",),
        ),
        _torchvision(
            "coco-keypoints",
            "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
            "fc266e953d2b302cdcbb9ae66f71f6b0d4649928bf02dc573961e361e4918926",
            kind="detection",
            architecture="keypointrcnn_resnet50_fpn",
            size_mb=226.05,
            summary="COCO 2017 person keypoints: box AP 54.6, keypoint AP 65.0 (59.1M parameters; no masks)",
            aliases=("keypointrcnn_resnet50_fpn", "coco-pose"),
            classes=("person",),
        ),
        _torchvision(
            "imagenet-r18",
            "resnet18-f37072fd.pth",
            "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
            kind="backbone",
            architecture="resnet18",
            size_mb=44.66,
            summary="ImageNet-1K: top-1 69.76 (11.7M parameters)",
            aliases=("resnet18",),
        ),
        _torchvision(
            "imagenet-r34",
            "resnet34-b627a593.pth",
            "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f",
            kind="backbone",
            architecture="resnet34",
            size_mb=83.28,
            summary="ImageNet-1K: top-1 73.31 (21.8M parameters)",
            aliases=("resnet34",),
        ),
        _torchvision(
            "imagenet-r50",
            "resnet50-0676ba61.pth",
            "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
            kind="backbone",
            architecture="resnet50",
            size_mb=97.78,
            summary="ImageNet-1K: top-1 76.13 (25.6M parameters)",
            aliases=("resnet50",),
        ),
        _torchvision(
            "imagenet-r101",
            "resnet101-63fe2227.pth",
            "63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a",
            kind="backbone",
            architecture="resnet101",
            size_mb=170.51,
            summary="ImageNet-1K: top-1 77.37 (44.5M parameters)",
            aliases=("resnet101",),
        ),
        _torchvision(
            "imagenet-x50",
            "resnext50_32x4d-7cdf4587.pth",
            "7cdf4587",
            kind="backbone",
            architecture="resnext50_32x4d",
            size_mb=95.79,
            summary="ImageNet-1K: top-1 77.62 (25.0M parameters)",
            aliases=("resnext50_32x4d", "imagenet-resnext50"),
        ),
        _torchvision(
            "imagenet-x101",
            "resnext101_32x8d-8ba56ff5.pth",
            "8ba56ff5",
            kind="backbone",
            architecture="resnext101_32x8d",
            size_mb=339.59,
            summary="ImageNet-1K: top-1 79.31 (88.8M parameters)",
            aliases=("resnext101_32x8d", "imagenet-resnext101"),
        ),
    )
}


def find(name: str) -> WeightsEntry | None:
    """The entry that ``name`` selects (its name, an alias or its file name, any case), or ``None``."""
    wanted = name.strip().lower()
    for entry in REGISTRY.values():
        if wanted in entry.names():
            return entry
    return None


def register(entry: WeightsEntry) -> None:
    """Add (or replace) a named checkpoint, e.g. a model your team serves from its own web server, so
    that ``--weights NAME`` finds it like the built-in ones.

    Raises:
        ValueError: one of its names already selects another entry.
    """
    for other in REGISTRY.values():
        clash = set(entry.names()) & set(other.names())
        if other.name != entry.name and clash:
            raise ValueError(f"weights {entry.name!r}: {sorted(clash)[0]!r} already names {other.name!r}")
    REGISTRY[entry.name] = entry
