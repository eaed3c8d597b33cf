"""The report's folder: pictures (files copied as they are where a browser shows them, else scaled and
re-encoded; unreadable ones named), the data scripts, escaping, and replacing a report safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from maskrcnn.engine.viewer.pictures import THUMB_SIZE, VIEW_SIZE
from maskrcnn.engine.viewer.records import ImageRecord
from maskrcnn.engine.viewer.site import Section, write_site


def read_index(folder: Path) -> dict:
    text = (folder / "data" / "index.js").read_text(encoding="utf-8")
    prefix = "window.MASKRCNN_REPORT = "
    assert text.startswith(prefix)
    assert text.endswith(";\n")
    return json.loads(text[len(prefix) : -2])


def read_details(folder: Path, number: int) -> dict:
    text = (folder / "data" / "images" / f"{number:06d}.js").read_text(encoding="utf-8")
    prefix = f"MASKRCNN_IMAGE({number}, "
    assert text.startswith(prefix)
    assert text.endswith(");\n")
    return json.loads(text[len(prefix) : -3])


def _site(out, records, pictures, **more):
    return write_site(
        out,
        title="t",
        subtitle="s",
        mode="dataset",
        classes=["a"],
        records=records,
        pictures=pictures,
        **more,
    )


def test_pictures_copied_scaled_or_named_as_unreadable(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(jpeg, quality=80)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (VIEW_SIZE + 400, 100), (0, 90, 0)).save(wide)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg.read_bytes()[:300])
    pixels = Image.new("RGB", (40, 60), (0, 0, 255))
    records = [
        ImageRecord(k + 1, name, 10, 10) for k, name in enumerate(["photo", "wide", "broken", "pixels"])
    ]
    index = _site(tmp_path / "r", records, [(1, jpeg), (2, wide), (3, broken), (4, pixels)])
    out = index.parent
    entries = read_index(out)["images"]
    assert (out / entries[0]["view"]).read_bytes() == jpeg.read_bytes()  # shown as it is: copied
    with Image.open(out / entries[1]["view"]) as view:
        assert view.format == "JPEG"
        assert max(view.size) == VIEW_SIZE
    for entry, size in ((entries[0], (256, 171)), (entries[1], (256, 13)), (entries[3], (40, 60))):
        with Image.open(out / entry["thumb"]) as thumb:
            assert thumb.size == size
            assert max(thumb.size) <= THUMB_SIZE
    assert "thumb" not in entries[2]
    (problem,) = entries[2]["problems"]
    assert problem.startswith("cannot show the image:")
    assert str(broken) in problem, problem
    assert len(list((out / "data" / "images").iterdir())) == 4


def test_names_and_classes_cannot_break_out_of_the_page(tmp_path):
    name = "</script><script>alert(1)</script>"
    records = [ImageRecord(1, name, 10, 10, objects=[{"c": 0, "b": [0, 0, 1, 1], "m": None, "crowd": False}])]
    index = write_site(
        tmp_path / "r",
        title=name,
        subtitle=name,
        mode="dataset",
        classes=[name],
        records=records,
        pictures=[],
        sections=[Section(name.replace("<", "&lt;"), "<p>x</p>")],
    )
    for path in (index, index.parent / "data" / "index.js", index.parent / "data" / "images" / "000001.js"):
        assert "</script><script>alert" not in path.read_text(encoding="utf-8"), path.name
    assert read_index(index.parent)["classes"] == [name]  # escaped, not changed
    assert read_details(index.parent, 1)["objects"][0]["b"] == [0, 0, 1, 1]


def test_a_report_is_replaced_whole_and_nothing_else_is(tmp_path):
    out = tmp_path / "r"
    records = [ImageRecord(k + 1, f"i{k}", 10, 10) for k in range(3)]
    picture = Image.new("RGB", (10, 10))
    _site(out, records, [(k + 1, picture) for k in range(3)])
    assert len(list((out / "thumbs").iterdir())) == 3
    _site(out, records[:1], [(1, picture)])
    assert len(list((out / "thumbs").iterdir())) == 1  # the old report's pictures went with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no building or old folder left

    def failing():
        yield 1, picture
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        _site(out, records, failing())
    assert len(read_index(out)["images"]) == 1  # the previous report stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a report"):
        _site(other, records, [])
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="a file is there"):
        _site(tmp_path / "file", records, [])


def test_sections_and_their_figures(tmp_path):
    from matplotlib.figure import Figure

    png = tmp_path / "plot.png"
    Image.new("RGB", (20, 10)).save(png)
    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([0, 1], [1, 0])
    index = _site(
        tmp_path / "r",
        [],
        [],
        sections=[Section("Metrics", "<p>AP 0.5</p>", {"plot.png": png, "drawn.png": figure})],
    )
    page = index.read_text(encoding="utf-8")
    assert "<h2>Metrics</h2><p>AP 0.5</p>" in page
    assert 'src="figures/plot.png"' in page
    assert 'src="figures/drawn.png"' in page
    assert (index.parent / "figures" / "plot.png").read_bytes() == png.read_bytes()
    with Image.open(index.parent / "figures" / "drawn.png") as drawn:
        assert drawn.size == (200, 100)
    for asset in ("viewer.js", "masks.js", "viewer.css"):
        assert f'"{asset}"' in page
        assert (index.parent / asset).stat().st_size > 500
