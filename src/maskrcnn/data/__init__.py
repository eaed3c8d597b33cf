"""Datasets: the item contract, readers for annotation formats, synthetic shapes, augmentation, loading."""

from maskrcnn.data.check import CheckReport, check_dataset
from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    InstanceDataset,
    MaskFile,
    Problem,
    ProblemLog,
    build_target,
)
from maskrcnn.data.formats import FORMATS, load_dataset
from maskrcnn.data.image_io import ImageError, image_size, read_image
from maskrcnn.data.loader import Batch, SkipBadItems, collate, drop_crowd, make_data_loader, set_epoch
from maskrcnn.data.shapes import ShapesDataset, write_shapes_coco

__all__ = [
    "FORMATS",
    "AnnotatedDataset",
    "Annotation",
    "Batch",
    "CheckReport",
    "DataError",
    "ImageError",
    "ImageRecord",
    "InstanceDataset",
    "MaskFile",
    "Problem",
    "ProblemLog",
    "ShapesDataset",
    "SkipBadItems",
    "build_target",
    "check_dataset",
    "collate",
    "drop_crowd",
    "image_size",
    "load_dataset",
    "make_data_loader",
    "read_image",
    "set_epoch",
    "write_shapes_coco",
]
