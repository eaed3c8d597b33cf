"""The weights commands: ``weights list``, ``weights download NAME`` and ``convert-weights IN OUT``."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskrcnn.cli.common import CommandError

__all__ = ["add_parsers", "run_convert_weights", "run_weights_download", "run_weights_list"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights",
        help="named pretrained weights: list them, download them into the cache",
        description="Named weights (torchvision's COCO Mask R-CNNs and ImageNet backbones) work wherever a "
        "checkpoint path does (--weights coco). They are kept in $MASKRCNN_HOME (default: the user's "
        "cache folder + maskrcnn).",
    )
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the names, what they are, and whether they are in the cache")
    listing.set_defaults(func=run_weights_list)
    download = actions.add_parser("download", help="download named weights into the cache (verified)")
    download.add_argument("names", nargs="+", metavar="NAME", help="e.g. coco, coco-v2, imagenet-r50")
    download.set_defaults(func=run_weights_download)

    convert = sub.add_parser(
        "convert-weights",
        help="write a torchvision checkpoint as one of this project's (.safetensors, config inside)",
        description="Read a checkpoint (a torchvision Mask R-CNN .pth, a registry name, or one of this "
        "project's), recognise its architecture and write it as OUT.safetensors with its config and class "
        "names inside (and OUT.json beside): later runs need no pickle reader.",
    )
    convert.add_argument("source", metavar="IN", help="the checkpoint to read (a path or a name)")
    convert.add_argument("out", metavar="OUT", help="the .safetensors file to write")
    convert.add_argument(
        "--class-names",
        metavar="NAMES",
        help="names of labels 1..K, comma-separated (for a checkpoint of your own classes; COCO "
        "checkpoints bring COCO's names)",
    )
    convert.set_defaults(func=run_convert_weights)


def run_weights_list(args: argparse.Namespace) -> int:
    """``maskrcnn weights list``: one line per named checkpoint."""
    from maskrcnn.weights import REGISTRY, cache_dir
    from maskrcnn.weights.cache import cached_file

    rows = [("NAME", "ARCHITECTURE", "CLASSES", "SIZE", "CACHED", "WHAT")]
    for entry in REGISTRY.values():
        classes = "backbone"
        if entry.kind == "detection":
            named = "COCO" if len(entry.classes) > 3 else ", ".join(entry.classes)
            classes = f"{entry.num_classes} ({named})"
        found = cached_file(entry)
        rows.append(
            (
                entry.name,
                entry.architecture,
                classes,
                f"{entry.size_mb:.0f} MB",
                str(found) if found else "no",
                entry.summary,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    print(f"cache: {cache_dir() / 'weights'} (set MASKRCNN_HOME to move it)")
    return 0


def run_weights_download(args: argparse.Namespace) -> int:
    """``maskrcnn weights download NAME...``: each file into the cache, verified; its path printed."""
    from maskrcnn.weights import REGISTRY, find
    from maskrcnn.weights.cache import fetch

    entries = []
    for name in args.names:
        entry = find(name)
        if entry is None:
            raise CommandError(f"unknown weights name {name!r}; known: {', '.join(REGISTRY)}")
        entries.append(entry)
    for entry in entries:
        path = fetch(entry)
        print(f"{entry.name}: {path}")
    return 0


def run_convert_weights(args: argparse.Namespace) -> int:
    """``maskrcnn convert-weights IN OUT``: any checkpoint as one of the project's."""
    from maskrcnn.weights import convert_checkpoint
    from maskrcnn.weights.coco import UNUSED_CLASS

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CommandError(f"OUT must end in .safetensors, got {out}")
    names = None
    if args.class_names is not None:
        names = [name.strip() for name in args.class_names.split(",")]
        if not all(names):
            raise CommandError(f"--class-names has an empty name: {args.class_names!r}")
    checkpoint = convert_checkpoint(args.source, out, class_names=names)
    shown = [n for n in checkpoint.class_names if n != UNUSED_CLASS]
    more = f", ... ({len(shown)} classes)" if len(shown) > 6 else ""
    print(
        f"wrote {out} ({checkpoint.extra.get('architecture', 'Mask R-CNN')}, classes "
        f"{', '.join(shown[:6])}{more}) and {out.with_suffix('.json').name} beside it"
    )
    return 0
