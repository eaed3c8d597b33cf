"""``maskrcnn export --weights CKPT --format onnx|torch-export --out FILE``: the whole detector as one file.

What the file computes and takes is described in :mod:`maskrcnn.export`. The file is written beside its
folder and renamed when complete, so an interrupted export never leaves a truncated model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskrcnn.cli.common import CommandError, add_weights_argument, checkpoint_error, probability
from maskrcnn.io import atomic_write
from maskrcnn.progress import inform

__all__ = ["add_parsers", "run_export"]

SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="write a model as ONNX or a torch.export program (pre- and post-processing inside)",
        description="Export the whole detector (resize, normalise, backbone, RPN, heads, NMS, boxes in "
        "input pixels) for one float32 [3, H, W] RGB image in 0..1, H and W dynamic. Outputs: boxes [D, 4], "
        "labels [D], scores [D], masks [D, 1, 28, 28] (paste them with maskrcnn.export.paste_masks).",
    )
    add_weights_argument(parser)
    parser.add_argument(
        "--format",
        choices=tuple(SUFFIXES),
        default=None,
        help="onnx (opset 18; needs the export extra: pip install 'maskrcnn[export]') or torch-export "
        "(a .pt2 program for torch.export.load); default: from the --out suffix, else onnx",
    )
    parser.add_argument(
        "--out", default=None, help="the file to write (default: the checkpoint's name with .onnx or .pt2)"
    )
    parser.add_argument(
        "--score-threshold",
        type=probability,
        default=None,
        metavar="T",
        help="keep detections scoring above this (default: the model's own, 0.05 for the presets); "
        "fixed in the file",
    )
    parser.set_defaults(func=run_export)


def _format_and_out(args: argparse.Namespace) -> tuple[str, Path]:
    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower() if args.out else ""
        fmt = next((name for name, s in SUFFIXES.items() if s == suffix), "onnx")
    out = Path(args.out) if args.out is not None else Path(Path(args.weights).stem + SUFFIXES[fmt])
    if out.is_dir():
        example = out / f"model{SUFFIXES[fmt]}"
        raise CommandError(f"--out {out} is a folder; name the file to write (e.g. {example})")
    return fmt, out


def run_export(args: argparse.Namespace) -> int:
    from maskrcnn.export import export_model
    from maskrcnn.weights import load_checkpoint

    fmt, out = _format_and_out(args)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise CommandError(
                f"ONNX export needs the export extra ({e.name} is not installed): "
                "pip install 'maskrcnn[export]'"
            ) from None
    try:
        checkpoint = load_checkpoint(args.weights)
    # Reading a checkpoint fails in many ways (missing file, corrupt data, foreign config): one line each.
    except Exception as e:
        raise checkpoint_error(args.weights, e) from None
    model = checkpoint.model
    if not model.roi_heads.has_masks:
        raise CommandError(
            f"{args.weights}: a model without masks (keypoints only) cannot be exported: the exported "
            "graph computes boxes and masks; use `maskrcnn predict` for keypoints"
        )
    if model.roi_heads.num_keypoints:
        inform("note: the exported model computes boxes and masks; its keypoint head is left out")
    if args.score_threshold is not None:
        model.roi_heads.score_thresh = args.score_threshold
    inform(f"exporting {args.weights} as {fmt} (tracing the model takes a minute)...")
    atomic_write(out, lambda tmp: export_model(model, tmp, format=fmt, class_names=checkpoint.class_names))
    size_mb = out.stat().st_size / 1e6
    names = ", ".join(checkpoint.class_names)
    print(f"wrote {out} ({size_mb:.1f} MB, {fmt})")
    print("  input:   image float32 [3, H, W], RGB in 0..1 (H, W dynamic)")
    print("  outputs: boxes [D, 4] (xyxy, input pixels), labels int64 [D], scores [D], masks [D, 1, 28, 28]")
    print(f"  classes: {names} (labels 1..{len(checkpoint.class_names)}; stored in the file)")
    print(
        f"  detections scoring above {model.roi_heads.score_thresh:g}, "
        f"at most {model.roi_heads.detections_per_img} per image"
    )
    return 0
