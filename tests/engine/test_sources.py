"""Sources (files, folders, globs) and the names of the outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskrcnn.engine.sources import (
    MediaFile,
    SourceError,
    iter_sources,
    mask_path,
    output_path,
    overwritten_input,
)


def test_iter_sources(tmp_path: Path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in ("b.png", "a.jpg", "a.png", "sub/c.png", ".hidden/d.png", ".e.png", "notes.txt", "clip.mp4"):
        (root / name).write_bytes(b"")
    flat = list(iter_sources(root))
    assert [(f.path.name, f.kind, f.name) for f in flat] == [
        ("a.jpg", "image", "a_jpg"),
        ("a.png", "image", "a_png"),
        ("b.png", "image", "b"),
        ("clip.mp4", "video", "clip"),
    ]
    deep = list(iter_sources(root, recursive=True))
    assert [f.name for f in deep] == ["a_jpg", "a_png", "b", "clip", "sub/c"]
    pattern = list(iter_sources(f"{root}/**/*.png"))
    assert [f.name for f in pattern] == ["a", "b", "sub/c"]
    assert [f.name for f in iter_sources(root / "sub" / "c.png")] == ["c"]

    with pytest.raises(SourceError, match="no such file, folder or glob"):
        iter_sources(tmp_path / "missing")
    with pytest.raises(SourceError, match="unsupported file"):
        iter_sources(root / "notes.txt")
    with pytest.raises(SourceError, match=r"no images .* in pattern"):
        iter_sources(f"{root}/*.gif")
    with pytest.raises(SourceError, match="--recursive"):
        iter_sources(tmp_path)


def test_names_differing_only_in_case_of_suffix_stay_unique(tmp_path: Path):
    for name in ("a.jpg", "a.JPG", "a.png"):
        (tmp_path / name).write_bytes(b"")
    if len(list(tmp_path.iterdir())) != 3:
        pytest.skip("a case-insensitive file system: a.JPG and a.jpg are one file")
    assert [f.name for f in iter_sources(tmp_path)] == ["a_jpg", "a_jpg_1", "a_png"]


def test_output_names(tmp_path: Path):
    image = MediaFile(Path("in/sub/cat.jpg"), "image", "sub/cat")
    video = MediaFile(Path("in/clip.mov"), "video", "clip")
    assert output_path(tmp_path, image, "predict") == tmp_path / "sub/cat.png"
    assert output_path(tmp_path, image, "splash") == tmp_path / "sub/cat_splash.png"
    assert output_path(tmp_path, video, "predict") == tmp_path / "clip_predictions.mp4"
    assert output_path(tmp_path, video, "splash") == tmp_path / "clip_splash.mp4"
    assert mask_path(tmp_path, image, 0, "cat") == tmp_path / "masks/sub/cat_0_cat.png"
    assert (
        mask_path(tmp_path, video, 3, "hot dog/bun", frame=12)
        == tmp_path / "masks/clip_000012_3_hot_dog_bun.png"
    )
    assert mask_path(tmp_path, image, 1, "???") == tmp_path / "masks/sub/cat_1_class.png"


def test_overwritten_input(tmp_path: Path):
    (tmp_path / "image.png").write_bytes(b"")
    files = list(iter_sources(tmp_path / "image.png"))
    assert overwritten_input(files, tmp_path, "predict") == files[0]  # image.png -> image.png
    assert overwritten_input(files, tmp_path, "splash") is None  # image_splash.png
    assert overwritten_input(files, tmp_path / "out", "predict") is None
