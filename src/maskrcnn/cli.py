"""The ``maskrcnn`` command line (also ``python -m maskrcnn``)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskrcnn import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    """Print the versions and compute devices this installation sees."""
    import numpy
    import PIL
    import pycocotools  # noqa: F401  (imported to prove it is installed)
    import torch

    print(f"maskrcnn     {__version__}")
    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"torch        {torch.__version__}  (threads: {torch.get_num_threads()})")
    print(f"numpy        {numpy.__version__}")
    print(f"Pillow       {PIL.__version__}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"cuda         available: {names}")
    else:
        print("cuda         not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("mps          available")
    return 0


# ----------------------------------------------------------------------------------------------------
# Data commands


def _parse_assignments(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["image_dir=imgs", "count=20"]`` -> ``{"image_dir": "imgs", "count": 20}`` (values as JSON/YAML
    literals when they parse, else strings)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"maskrcnn: {flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def _load(format: str, path: str | None, options: Sequence[str], strict: bool = False) -> Any:
    from maskrcnn.data import load_dataset

    kwargs = _parse_assignments(options, "--option")
    if strict:
        kwargs["strict"] = True
    try:
        return load_dataset(format, path, **kwargs)
    except TypeError as e:  # an option the reader does not take
        raise SystemExit(f"maskrcnn: --format {format}: {e}") from None


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return lambda it: tqdm(it, total=total, desc=desc, unit="img", leave=False, file=sys.stderr)


def _cmd_check_data(args: argparse.Namespace) -> int:
    from maskrcnn.data import DataError
    from maskrcnn.data.check import check_dataset

    try:
        dataset = _load(args.format, args.path, args.option, strict=args.strict)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report = check_dataset(
        dataset, source=args.path or args.format, progress=_progress(len(dataset), "checking")
    )
    print(report.render())
    return 0 if report.ok else 1


def _cmd_inspect_data(args: argparse.Namespace) -> int:
    import torch

    from maskrcnn.visualize import draw_instances, image_grid

    dataset = _load(args.format, args.path, args.option)
    dataset.transforms = None
    count = min(args.count, len(dataset))
    if count == 0:
        print("error: the dataset has no images", file=sys.stderr)
        return 1
    generator = torch.Generator().manual_seed(args.seed)
    indices = (
        torch.randperm(len(dataset), generator=generator)[:count].tolist() if args.shuffle else range(count)
    )
    pictures, titles = [], []
    for index in indices:
        image, target = dataset[index]
        pictures.append(
            draw_instances(
                image,
                boxes=target["boxes"],
                masks=target["masks"],
                labels=target["labels"],
                class_names=dataset.class_names,
            )
        )
        titles.append(f"{dataset.image_reference(index)} ({len(target['labels'])})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(pictures, columns=args.columns, titles=titles).save(out)
    print(f"wrote {out} ({count} images)")
    if args.anchors:
        anchors_out = out.with_name(out.stem + "_anchors" + out.suffix)
        _anchors_picture(dataset, next(iter(indices)), args.set).save(anchors_out)
        print(f"wrote {anchors_out} (anchors at the centre of each level, positive anchors green)")
    return 0


def _anchors_picture(dataset: Any, index: int, assignments: Sequence[str]) -> Any:
    """The anchors of a model config over one image, resized as the model resizes it."""
    import torch

    from maskrcnn.config import ModelConfig, override
    from maskrcnn.modeling.rpn import RegionProposalNetwork, RPNHead
    from maskrcnn.modeling.transform import RCNNTransform
    from maskrcnn.ops import AnchorGenerator, box_iou
    from maskrcnn.structures import ImageList
    from maskrcnn.visualize import draw_anchors

    cfg = override(ModelConfig(), _parse_assignments(assignments, "--set"))
    t = cfg.transform
    transform = RCNNTransform(
        min_size=t.min_size, max_size=t.max_size, image_mean=t.image_mean, image_std=t.image_std
    ).eval()
    image, target = dataset[index]
    resized, resized_target = transform.resize(image, dict(target))
    h, w = resized.shape[-2:]
    stride = t.size_divisible
    padded = (-(-h // stride) * stride, -(-w // stride) * stride)
    maps = [torch.zeros(1, 1, -(-padded[0] // s), -(-padded[1] // s)) for s in (4, 8, 16, 32, 64)]
    generator = AnchorGenerator(sizes=cfg.anchors.sizes, aspect_ratios=cfg.anchors.aspect_ratios)
    # What the model's anchor generator computes for this padded size (strides 4..64, P2..P6).
    per_level = generator(ImageList(torch.zeros(1, 3, *padded), [(h, w)]), maps)[0].split(
        [
            m.shape[-2] * m.shape[-1] * n
            for m, n in zip(maps, generator.num_anchors_per_location(), strict=True)
        ]
    )
    gt = resized_target["boxes"]
    positive = torch.zeros(0, 4)
    if len(gt):
        rpn = RegionProposalNetwork(
            anchor_generator=generator,
            head=RPNHead(1, generator.num_anchors_per_location()[0]),
            fg_iou_thresh=cfg.rpn.fg_iou_thresh,
            bg_iou_thresh=cfg.rpn.bg_iou_thresh,
        )
        all_anchors = torch.cat(per_level)
        matched = rpn.proposal_matcher(box_iou(gt, all_anchors))
        positive = all_anchors[matched >= 0]
    return draw_anchors(resized, per_level, positive=positive, gt_boxes=gt)


def _cmd_convert(args: argparse.Namespace) -> int:
    from maskrcnn.data import DataError, ImageError
    from maskrcnn.data.formats.export import write_coco

    target_format, out_path = args.to
    if target_format != "coco":
        raise SystemExit(f"maskrcnn convert: --to {target_format}: only coco is supported")
    try:
        dataset = _load(args.source_format, args.source, args.option, strict=args.strict)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    problems = [str(p) for p in getattr(dataset, "problems", [])]
    skipped: list[str] | None = None if args.strict else []
    try:
        out = write_coco(dataset, out_path, image_root=args.image_root, skipped=skipped)
    except (DataError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    problems += [f"error: {message}" for message in skipped or []]
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    errors = sum(line.startswith("error") for line in problems)
    print(
        f"wrote {out}: {len(dataset) - len(skipped or [])} images, {len(dataset.class_names)} classes"
        + (f" ({errors} instances or images with errors left out, listed above)" if errors else "")
    )
    return 0


# ----------------------------------------------------------------------------------------------------
# Training


def _run_config(args: argparse.Namespace) -> Any:
    """The run's config: a preset or a file, then the command-line settings, then --set overrides."""
    from maskrcnn.config import load_config, override, preset

    if args.preset and args.config:
        raise SystemExit("maskrcnn train: give --preset or --config, not both")
    cfg = load_config(args.config) if args.config else preset(args.preset or "shapes")
    assignments: dict[str, Any] = {}
    if args.format:
        assignments["data.format"] = args.format
    if args.data:
        assignments["data.train"] = args.data
    if args.val_data:
        assignments["data.val"] = args.val_data
    if args.weights and args.weights != "last":
        assignments["train.weights"] = args.weights
    if args.layers:
        assignments["train.layers"] = args.layers
    if args.device:
        assignments["train.device"] = args.device
    assignments.update(_parse_assignments(args.set, "--set"))
    return override(cfg, assignments)


def _cmd_train(args: argparse.Namespace) -> int:
    from maskrcnn.data import DataError, ImageError
    from maskrcnn.engine.train import TrainingError, train

    resume = args.resume or args.weights == "last"
    try:
        if resume:
            from maskrcnn.config import load_config, override

            # The run's own config; --set may still change what is safe to change (e.g. train.epochs).
            cfg = override(load_config(Path(args.out) / "config.yaml"), _parse_assignments(args.set, "--set"))
        else:
            cfg = _run_config(args)
        result = train(cfg, args.out, resume=resume)
    except (TrainingError, DataError, ImageError, ValueError, FileNotFoundError) as e:
        print(f"error{_rank_label()}: {e}", file=sys.stderr)
        return 1
    if _rank_label() == "":
        _print_result(result)
    return 130 if result.stopped == "interrupted" else 0


def _rank_label() -> str:
    """`` (rank N)`` in the processes of a torchrun launch other than rank 0 (whose output is plain)."""
    from maskrcnn.engine.distributed import launched_with_several_processes

    # From the environment: the process group is gone by the time the command reports.
    rank = int(os.environ.get("RANK", "0")) if launched_with_several_processes() else 0
    return f" (rank {rank})" if rank else ""


def _print_result(result: Any) -> None:
    lines = [f"{result.stopped}: {result.steps} steps, run directory {result.run_dir}"]
    for section, name in (("bbox", "box"), ("segm", "mask")):
        values = result.metrics.get(section)
        if values:
            keys = ("AP", "AP50", "AP75")
            lines.append(
                f"  {name:4s} "
                + "  ".join(f"{k} {values[k] if values[k] is not None else 0:.3f}" for k in keys)
            )
    print("\n".join(lines))


def _cmd_demo(args: argparse.Namespace) -> int:
    from maskrcnn.engine.demo import run_demo
    from maskrcnn.engine.distributed import launched_with_several_processes
    from maskrcnn.engine.train import TrainingError

    if launched_with_several_processes():
        print(
            "error: the demo runs in one process; to train the shapes preset with torchrun use "
            "`torchrun --nproc-per-node N -m maskrcnn train --preset shapes --out DIR`",
            file=sys.stderr,
        )
        return 1
    try:
        summary = run_demo(args.out, _parse_assignments(args.set, "--set"), resume=args.resume)
    except (TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def _add_data_arguments(parser: argparse.ArgumentParser, *, format_flag: str = "--format") -> None:
    from maskrcnn.data.formats import FORMATS

    parser.add_argument(
        format_flag,
        dest="format" if format_flag == "--format" else "source_format",
        required=True,
        choices=sorted(FORMATS),
        help="annotation format",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, e.g. -o image_dir=images, -o class_attribute=name (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn",
        description="Instance segmentation with Mask R-CNN: train, evaluate, predict, color splash.",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="show versions and the devices torch can use")
    info.set_defaults(func=_cmd_info)

    check = sub.add_parser(
        "check-data",
        help="validate a dataset: counts per class, and every problem named",
        description="Read a dataset as training would and report per-class counts, images without objects "
        "and every problem (file, image, annotation, value). Exit code 0 when there is no error, else 1.",
    )
    _add_data_arguments(check)
    check.add_argument("path", nargs="?", help="what the format reads (JSON file, folder, data YAML)")
    check.add_argument("--strict", action="store_true", help="stop at the first error")
    check.set_defaults(func=_cmd_check_data)

    inspect = sub.add_parser("inspect", help="pictures of data (and later, of models)")
    inspect_sub = inspect.add_subparsers(dest="what", metavar="WHAT", required=True)
    data = inspect_sub.add_parser(
        "data", help="a grid of images with their ground-truth masks, boxes and class names"
    )
    _add_data_arguments(data)
    data.add_argument("path", nargs="?", help="what the format reads")
    data.add_argument("--out", required=True, help="the PNG to write")
    data.add_argument("--count", type=int, default=16, help="images in the grid (default 16)")
    data.add_argument("--columns", type=int, default=4)
    data.add_argument("--shuffle", action="store_true", help="random images instead of the first ones")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument(
        "--anchors",
        action="store_true",
        help="also write OUT_anchors.png: the model's anchors and the positive ones over the first image",
    )
    data.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config for --anchors, e.g. --set anchors.sizes=[[16],[32],[64],[128],[256]] "
        "--set transform.min_size=128",
    )
    data.set_defaults(func=_cmd_inspect_data)

    train = sub.add_parser(
        "train",
        help="train a model (from scratch or from weights you have)",
        description="Train Mask R-CNN. The run directory (--out) receives config.yaml, log.jsonl, "
        "last/best checkpoints (.safetensors with the config and class names beside them), the training "
        "state for --resume, loss_curve.png and the final validation report (metrics.json).",
    )
    train.add_argument(
        "--preset", choices=["shapes", "coco", "balloon"], help="a starting config (default shapes)"
    )
    train.add_argument("--config", help="a YAML config file (e.g. a run's config.yaml)")
    train.add_argument("--data", help="the training data (what the format reads)")
    train.add_argument("--val-data", help="the validation data")
    train.add_argument("--format", help="the data format (default: the preset's)")
    train.add_argument(
        "--weights",
        help="initial weights: a .safetensors checkpoint, a torchvision .pth, an ImageNet ResNet "
        ".pth, or 'last' to resume the run in --out",
    )
    train.add_argument("--layers", choices=["heads", "3+", "4+", "5+", "all"], help="which layers train")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.01 --set data.batch_size=4 (repeatable)",
    )
    train.add_argument("--out", required=True, help="the run directory")
    train.set_defaults(func=_cmd_train)

    demo = sub.add_parser(
        "demo",
        help="the demo: train a small model on synthetic shapes and evaluate it (CPU, minutes)",
        description="Generate the shapes data, train a small Mask R-CNN from scratch, evaluate it on "
        "held-out shapes and write the model, metrics.json, the loss curve and prediction pictures to --out.",
    )
    demo.add_argument("--out", default="runs/demo", help="the output folder (default runs/demo)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    demo.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override the shapes preset"
    )
    demo.set_defaults(func=_cmd_demo)

    from maskrcnn.engine.evaluate import add_evaluate_arguments
    from maskrcnn.engine.predict import add_predict_arguments, add_splash_arguments, run_predict, run_splash

    add_evaluate_arguments(
        sub.add_parser(
            "evaluate",
            help="COCO box and mask AP of a checkpoint on a dataset",
            description="Evaluate a checkpoint with the COCO metrics (pycocotools): DIR/metrics.json, "
            "per-class tables, results.json (RLE masks, original category ids), a precision-recall plot and "
            "a confusion matrix.",
        )
    )

    predict = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs and videos",
        description="Run a trained model on an image, a folder, a glob or a video: overlay pictures "
        "(masks, boxes, class names, scores), results.json (COCO results with RLE masks) and optionally one "
        "PNG per instance mask.",
    )
    add_predict_arguments(predict)
    predict.set_defaults(func=run_predict)
    splash = sub.add_parser(
        "splash",
        help="the color splash effect: grey image, colour kept inside the detected masks",
        description="Color splash on images and videos: the picture turns grey except inside the objects "
        "the model finds.",
    )
    add_splash_arguments(splash)
    splash.set_defaults(func=run_splash)

    convert = sub.add_parser(
        "convert",
        help="convert a dataset to COCO JSON",
        description="maskrcnn convert --from FORMAT SRC --to coco OUT.json: any reader's dataset as COCO "
        "instances (masks as RLE, boxes from the masks); problems are listed and their instances left out.",
    )
    _add_data_arguments(convert, format_flag="--from")
    convert.add_argument("source", nargs="?", help="what the source format reads")
    convert.add_argument(
        "--to", nargs=2, required=True, metavar=("FORMAT", "OUT"), help="coco and the JSON file to write"
    )
    convert.add_argument(
        "--image-root", help="write image file names relative to this folder (default: absolute paths)"
    )
    convert.add_argument("--strict", action="store_true", help="stop at the first error")
    convert.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
