import math

import pytest
import torch

from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.via import ViaDataset, ellipse_polygon
from maskrcnn.ops import polygons_to_mask

from .writers_a import mask, messages, write_image, write_json

W, H = 20, 16


def region(shape, **attributes):
    return {"shape_attributes": shape, "region_attributes": attributes}


def rect(x, y, w, h):
    return {"name": "rect", "x": x, "y": y, "width": w, "height": h}


def polygon(xs, ys, name="polygon"):
    return {"name": name, "all_points_x": xs, "all_points_y": ys}


def entry(filename, regions, size=1234):
    return {
        f"{filename}{size}": {
            "fileref": "",
            "size": size,
            "filename": filename,
            "base64_img_data": "",
            "file_attributes": {},
            "regions": regions,
        }
    }


def test_via1_dict_regions_rect_polygon_polyline_and_negative(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    write_image(tmp_path / "b.png", W, H)
    regions = {
        "0": region(rect(2, 3, 4, 5)),
        # An L: rows 2..4 over columns 10..15, then rows 5..8 over columns 10..12.
        "1": region(polygon([10, 16, 16, 13, 13, 10], [2, 2, 5, 5, 9, 9])),
        # An open outline of the square (1, 10)-(4, 14), closed into a polygon.
        "2": region(polygon([1, 4, 4, 1], [10, 10, 14, 14], name="polyline")),
    }
    path = write_json(tmp_path / "via_region_data.json", {**entry("a.png", regions), **entry("b.png", {})})
    ds = ViaDataset(path, class_name="balloon")
    assert messages(ds) == []
    # The negative is kept, and said: in VIA an image without regions is more often a lost annotation.
    assert messages(ds, "warning") == [
        f"warning: {path}: 1 images have no regions (read as images without objects): b.png"
    ]
    assert ds.class_names == ["balloon"]
    assert [(r.image_id, r.ref, r.height, r.width) for r in ds.records] == [
        (0, "a.png", H, W),
        (1, "b.png", H, W),
    ]

    _, target = ds[0]
    expected = torch.stack(
        [
            mask(H, W, (2, 3, 6, 8)),  # x = 2, width 4, y = 3, height 5: pixels x 2..5, y 3..7
            mask(H, W, (10, 2, 16, 5), (10, 5, 13, 9)),
            mask(H, W, (1, 10, 4, 14)),
        ]
    )
    assert torch.equal(target["masks"], expected)
    assert target["labels"].tolist() == [1, 1, 1]
    assert target["area"].tolist() == [20, 18 + 12, 12]
    assert target["boxes"].tolist() == [[2, 3, 6, 8], [10, 2, 16, 9], [1, 10, 4, 14]]
    # b.png lists no region: a negative.
    _, target = ds[1]
    assert target["masks"].shape == (0, H, W)
    assert target["image_id"].item() == 1


def test_via2_project_list_regions_text_and_checkbox_classes(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", W, H)
    regions = [
        region(rect(0, 0, 2, 2), type="dog"),
        region(rect(4, 0, 2, 2), type={"cat": True, "dog": False}),
        region(rect(8, 0, 2, 2), type=" dog "),  # surrounding spaces are a typing slip, not a class
    ]
    project = {
        "_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
        "_via_img_metadata": entry("a.png", regions),
        "_via_attributes": {"region": {"type": {"type": "dropdown"}}, "file": {}},
    }
    path = write_json(tmp_path / "project.json", project)
    ds = load_dataset("via", path, image_dir=tmp_path / "imgs", class_attribute="type")
    assert isinstance(ds, ViaDataset)
    assert ds.problems == []
    assert ds.class_names == ["cat", "dog"]  # discovered, sorted
    _, target = ds[0]
    assert target["labels"].tolist() == [2, 1, 2]
    assert target["boxes"].tolist() == [[0, 0, 2, 2], [4, 0, 6, 2], [8, 0, 10, 2]]

    fixed = ViaDataset(
        path, image_dir=tmp_path / "imgs", class_attribute="type", class_names=["dog", "cat", "bird"]
    )
    assert fixed.class_names == ["dog", "cat", "bird"]
    assert fixed[0][1]["labels"].tolist() == [1, 2, 1]


def test_circle_and_ellipse_areas_and_boxes(tmp_path):
    write_image(tmp_path / "a.png", 64, 64)
    regions = [
        region({"name": "circle", "cx": 32, "cy": 32, "r": 20}),
        region({"name": "ellipse", "cx": 32, "cy": 32, "rx": 20, "ry": 8}),
        region({"name": "ellipse", "cx": 32, "cy": 32, "rx": 20, "ry": 8, "theta": math.pi / 2}),
    ]
    ds = ViaDataset(write_json(tmp_path / "via.json", entry("a.png", regions)))
    assert ds.problems == []
    _, target = ds[0]
    area = target["area"].tolist()
    assert abs(area[0] - math.pi * 400) < 0.01 * math.pi * 400
    assert abs(area[1] - math.pi * 160) < 0.02 * math.pi * 160
    assert abs(area[2] - math.pi * 160) < 0.02 * math.pi * 160
    # Pixel i is inside when its centre i + 0.5 is: the circle spans centres 12.5 .. 51.5.
    assert target["boxes"].tolist() == [[12, 12, 52, 52], [12, 24, 52, 40], [24, 12, 40, 52]]


@pytest.mark.parametrize("r", [3.0, 10.0, 40.0, 300.0])
def test_ellipse_polygon_area_is_exact(r):
    part = ellipse_polygon(5.0, -2.0, r, r / 2, theta=0.3)
    xs, ys = part[0::2], part[1::2]
    shoelace = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
    assert shoelace == pytest.approx(math.pi * r * r / 2, rel=1e-9)
    assert len(xs) >= 64
    # Large ellipses get more vertices, so chords stay close to the curve (sagitta <= ~0.1 px).
    n = len(xs)
    assert r * (1 - math.cos(math.pi / n)) <= 0.11


def test_ellipse_polygon_of_a_radius_near_the_float_limit_is_a_polygon():
    # A broken file's radius: the vertex count is capped, nothing overflows on the way.
    part = ellipse_polygon(40.0, 20.0, 3.6e307, 3.6e307)
    assert len(part) == 2 * 4096
    assert all(math.isfinite(v) for v in part)


def test_rasterised_circle_area_within_one_percent():
    for r in (12.0, 25.0, 60.0):
        m = polygons_to_mask([ellipse_polygon(100.3, 90.7, r, r)], 200, 200)
        assert abs(int(m.sum()) - math.pi * r * r) < 0.01 * math.pi * r * r


def test_each_problem_names_file_image_and_region(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    regions = {
        "0": region(rect(2, 3, 4, 5), kind="balloon"),  # fine
        "1": region({"name": "point", "cx": 5, "cy": 6}, kind="balloon"),
        "2": region({"name": "star"}, kind="balloon"),
        "3": region(rect(2, 3, 4, 5)),
        "4": region(rect(2, 3, 4, 5), kind=""),
        "5": region(rect(2, 3, 4, 5), kind={"balloon": True, "kite": True}),
        "6": region(rect(2, 3, 4, 5), kind="kite"),
        "7": region(polygon([1, 5], [1, 5]), kind="balloon"),
        "8": region(rect(2, 3, 0, 5), kind="balloon"),
        "9": region({"name": "circle", "cx": 5, "cy": 5, "r": 0}, kind="balloon"),
        "10": region(polygon([1, 5, 5], [1, 5]), kind="balloon"),
        "11": region(rect(30, 3, 4, 5), kind="balloon"),
        "12": {"region_attributes": {"kind": "balloon"}},
        "13": region({"name": "circle", "cx": 5, "cy": 5, "r": float("nan")}, kind="balloon"),
        "14": region(
            {"name": "ellipse", "cx": 5, "cy": 5, "rx": 2, "ry": 1, "theta": float("inf")}, kind="balloon"
        ),
    }
    data = {
        **entry("a.png", regions),
        **entry("missing.png", {}),
        **entry("a.png", {}, size=99),
        **entry("c.png", "oops"),
    }
    path = write_json(tmp_path / "via.json", data)
    ds = ViaDataset(path, class_attribute="kind", class_names=["balloon"])
    src = str(path)
    expected = [
        "image a.png, region 1: a point (5, 6) has no area",
        "image a.png, region 2: unknown shape 'star'",
        "image a.png, region 3: no 'kind' region attribute",
        "image a.png, region 4: empty 'kind' region attribute",
        "image a.png, region 5: 'kind' has 2 options ticked",
        "image a.png, region 6: class 'kite' is not one of class_names ['balloon']",
        "image a.png, region 7: polygon part 0 has 2 points",
        "image a.png, region 8: rect of width 0 and height 5 has no area",
        "image a.png, region 9: circle of radius 0 has no area",
        "image a.png, region 10: polygon has 3 x and 2 y coordinates",
        f"image a.png, region 11: polygon lies outside the {W}x{H} image",
        "image a.png, region 12: no shape",
        "image a.png, region 13: circle has r nan, not a finite number",
        "image a.png, region 14: ellipse has theta inf, not a finite number",
        f"image missing.png: image file not found: {tmp_path / 'missing.png'}",
        "image a.png: listed twice (entries 'a.png1234' and 'a.png99')",
        "image c.png: 'regions' is str; expected an object or a list",
    ]
    errors = messages(ds)
    assert len(errors) == len(expected)
    for message, tail in zip(errors, expected, strict=True):
        assert message.startswith(f"error: {src}, {tail}"), (message, tail)
    assert [r.ref for r in ds.records] == ["a.png"]
    assert [a.ref for a in ds.records[0].annotations] == ["region 0"]

    with pytest.raises(DataError, match=r"via\.json, image a\.png, region 1: a point"):
        ViaDataset(path, class_attribute="kind", class_names=["balloon"], strict=True)


def test_classes_discovered_from_every_region(tmp_path):
    # A class seen only on a missing image still gets its label: the list depends on the file alone.
    write_image(tmp_path / "a.png", W, H)
    data = {
        **entry("a.png", [region(rect(1, 1, 3, 3), kind="b")]),
        **entry("gone.png", [region(rect(1, 1, 3, 3), kind="a")]),
    }
    ds = ViaDataset(write_json(tmp_path / "via.json", data), class_attribute="kind")
    assert ds.class_names == ["a", "b"]
    assert ds[0][1]["labels"].tolist() == [2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"a.png1": {"filename": "a.png", "regions": {}', r"not valid JSON \(line 1, column \d+"),
        ('{"images": [], "annotations": []}', r"entry 'images' has no 'filename'; expected a VIA"),
        ("[1, 2]", r"got a JSON list; expected a VIA"),
        ('{"project": {}, "config": {}, "attribute": {}, "file": {}, "metadata": {}, "view": {}}', "VIA 3"),
    ],
)
def test_malformed_files_raise(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=r"bad\.json: .*" + match):
        ViaDataset(path)


def test_class_names_need_an_attribute(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    two = write_json(
        tmp_path / "two.json", entry("a.png", [region(rect(1, 1, 4, 4), kind="cat", colour="red")])
    )
    with pytest.raises(DataError, match=rf"{two}: class_names needs class_attribute= .* no single attribute"):
        ViaDataset(two, class_names=["cat"])
    assert ViaDataset(two, class_names=["cat"], class_attribute="kind").class_names == ["cat"]
    # A sole attribute is the one to read: class_names then only fixes the classes and their order.
    sole = write_json(tmp_path / "sole.json", entry("a.png", [region(rect(1, 1, 4, 4), kind="cat")]))
    ds = ViaDataset(sole, class_names=["dog", "cat"])
    assert ds.class_names == ["dog", "cat"]
    assert ds[0][1]["labels"].tolist() == [2]


def test_a_sole_region_attribute_is_the_class(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    regions = [region(rect(1, 1, 4, 4), kind="cat"), region(rect(8, 8, 4, 4), kind="dog")]
    metadata = entry("a.png", regions)
    project = {
        "_via_settings": {},
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": {"kind": {}}},
    }
    for data in (project, metadata):  # the project's definition, or the one key of every region
        path = write_json(tmp_path / "via.json", data)
        ds = ViaDataset(path)
        assert ds.class_names == ["cat", "dog"]
        assert ds[0][1]["labels"].tolist() == [1, 2]
        assert messages(ds, "warning") == [
            f"warning: {path}: classes read from the region attribute 'kind', the only one; pass "
            "class_attribute= or class_name= (one class) to choose"
        ]
        assert ViaDataset(path, class_name="pet").class_names == ["pet"]  # a single class, as asked
    # Two attributes, or a region without one: nothing to guess, one class as before.
    two = entry("a.png", [region(rect(1, 1, 4, 4), kind="cat", colour="red")])
    assert ViaDataset(write_json(tmp_path / "two.json", two)).class_names == ["object"]
    some = entry("a.png", [region(rect(1, 1, 4, 4), kind="cat"), region(rect(8, 8, 4, 4))])
    assert ViaDataset(write_json(tmp_path / "some.json", some)).class_names == ["object"]
