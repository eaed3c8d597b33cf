import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskrcnn.data.image_io import ImageError, image_size, read_image, read_image_bytes


def _rgb(h: int = 4, w: int = 6) -> np.ndarray:
    array = np.zeros((h, w, 3), dtype=np.uint8)
    array[0, 0] = (255, 0, 0)  # top-left red
    array[0, -1] = (0, 255, 0)  # top-right green
    array[-1, 0] = (0, 0, 255)  # bottom-left blue
    return array


def test_rgb_png_exactly(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(path)
    image = read_image(path)
    assert image.shape == (3, 4, 6)
    assert image.dtype == torch.float32
    assert image[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert image[:, -1, 0].tolist() == [0.0, 0.0, 1.0]
    assert image_size(path) == (4, 6)


@pytest.mark.parametrize(("orientation", "corner"), [(3, (3, 5)), (6, (0, 3)), (8, (5, 0))])
def test_exif_orientation_is_applied(tmp_path, orientation, corner):
    # Orientation 3: rotated 180 degrees; 6: the camera was turned clockwise (the picture is rotated
    # 90 degrees clockwise for display); 8: counter-clockwise. Red starts at the top-left pixel.
    img = Image.fromarray(_rgb())
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    image = read_image(path)
    expected_shape = (4, 6) if orientation == 3 else (6, 4)
    assert tuple(image.shape[-2:]) == expected_shape
    assert image_size(path) == expected_shape
    y, x = corner
    assert image[:, y, x].tolist() == [1.0, 0.0, 0.0]


def test_modes_become_rgb(tmp_path):
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (3, 4, 6)
    assert torch.equal(image[0], image[2])
    assert image[0, 1, 0].item() == pytest.approx(60 / 255)

    rgba = np.concatenate([_rgb(), np.full((4, 6, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png")[:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # alpha dropped

    palette = Image.fromarray(_rgb()).convert("P")
    palette.save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png")[:, 0, -1].tolist() == [0.0, 1.0, 0.0]

    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (3, 4, 6)
    assert cmyk[0, 0, 0] > 0.8  # still red


def test_sixteen_bit_grey_uses_the_full_range(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 1, 4)
    torch.testing.assert_close(image[1, 0], torch.tensor([0.0, 16384 / 65535, 32768 / 65535, 1.0]))


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ImageError, match=r"missing.png: file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match=r"notes.png: not an image"):
        read_image(tmp_path / "notes.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg"
    )
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut.jpg: cannot decode"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match=r"blob: cannot decode"):
        read_image_bytes(data[: len(data) // 2], "blob")
    assert read_image_bytes(data, "blob").shape == (3, 64, 64)


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    Image.fromarray(_rgb(40, 40)).save(tmp_path / "big.png")
    # Pillow warns past MAX_IMAGE_PIXELS: that is an error here, before any pixel is decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"big.png: refused as a possible decompression bomb"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ImageError, match="decompression bomb"):
        image_size(tmp_path / "big.png")


def _encoded(fmt: str) -> bytes:
    """A small textured picture in ``fmt``, with an EXIF orientation where the format stores one."""
    import io

    pixels = np.random.default_rng(0).integers(0, 255, size=(12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        img.save(buffer, fmt, exif=exif)
    else:
        img.convert("P").save(buffer, fmt)
    return buffer.getvalue()


FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
ENCODED = {fmt: _encoded(fmt) for fmt in FORMATS}


def test_pillows_warnings_become_one_log_line_naming_the_file(tmp_path, caplog):
    damaged = bytearray(ENCODED["JPEG"])
    damaged[34] = 0xFF  # inside the EXIF block: Pillow warns of corrupt EXIF data, the pixels are intact
    path = tmp_path / "phone.jpg"
    path.write_bytes(bytes(damaged))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    assert image.shape == (3, 12, 16)  # the orientation tag is lost with the EXIF data
    (record,) = caplog.records  # Pillow's wording after the file's name may change between versions
    assert record.getMessage().startswith(f"{path}: Corrupt EXIF data")


def test_a_tiff_whose_width_is_no_integer_is_an_image_error(tmp_path):
    # Found by the fuzzing below: Image.open raises a bare ValueError ("Invalid dimensions") for it.
    raw = bytearray(ENCODED["TIFF"])
    width_tag = bytes([0, 1, 4, 0, 1, 0, 0, 0, 16, 0])  # tag 256 (ImageWidth), LONG, 1 value: 16
    at = raw.index(width_tag)
    raw[at + 2] = 11  # its type: FLOAT
    path = tmp_path / "float_width.tiff"
    path.write_bytes(bytes(raw))
    for read in (image_size, read_image):
        with pytest.raises(ImageError, match=rf"{path}: cannot open \(Invalid dimensions\)"):
            read(path)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None)
@given(st.data())
def test_damaged_files_are_image_errors(tmp_path_factory, data):
    """Bytes changed, inserted or cut off anywhere in a valid file of each format: reading the header or
    the pixels gives a picture or an ``ImageError`` naming the file, never Pillow's own exceptions."""
    fmt = data.draw(st.sampled_from(FORMATS))
    raw = bytearray(ENCODED[fmt])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["set", "insert", "cut"]))
        if kind == "set":
            raw[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at:]
            break
    path = tmp_path_factory.mktemp("damaged") / f"x.{fmt.lower()}"
    path.write_bytes(bytes(raw))
    for read in (image_size, read_image, lambda p: read_image_bytes(p.read_bytes(), str(p))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Pillow's warnings are logged with the file's name
                read(path)
            message = str(path)
        except ImageError as e:
            message = str(e)
        assert str(path) in message
