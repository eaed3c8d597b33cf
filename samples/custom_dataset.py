"""Your own annotation format in ~30 lines: subclass InstanceDataset, register classes and images, load masks.

Here the format is a folder of images, each with a ``<image stem>.txt`` beside it holding one object per
line: ``class_name x1 y1 x2 y2 x3 y3 ...`` (a polygon in pixels). Run it on such a folder to see what it
reads:

    python samples/custom_dataset.py path/to/folder
"""

import sys
from pathlib import Path

import torch

from maskrcnn.data import InstanceDataset
from maskrcnn.data.check import check_dataset
from maskrcnn.ops import polygons_to_mask


class PolygonFolder(InstanceDataset):
    def __init__(self, folder: str, class_names: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]  # transforms=...
        for name in class_names:
            self.add_class(name)  # labels 1, 2, ... in this order
        for image_path in sorted(Path(folder).glob("*.jpg")) + sorted(Path(folder).glob("*.png")):
            objects = []
            for line in image_path.with_suffix(".txt").read_text().splitlines():
                name, *coords = line.split()
                objects.append((self.add_class(name), [float(v) for v in coords]))
            self.add_image(image_path, objects=objects)

    def load_masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.image_size(index)
        objects = self.image_info[index]["objects"]
        masks = [polygons_to_mask([coords], height, width) for _, coords in objects]
        stacked = torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
        return stacked, torch.tensor([label for label, _ in objects], dtype=torch.int64)


if __name__ == "__main__":
    dataset = PolygonFolder(sys.argv[1], class_names=[])
    print(check_dataset(dataset, source=sys.argv[1]).render())
