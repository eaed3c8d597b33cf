"""The one file writer: whole files or none, normal permissions, no temporary file left behind."""

import json
import os

import pytest

from maskrcnn.io import atomic_write, write_json, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_follow_the_umask(tmp_path, umask_022):
    path = write_text(tmp_path / "sub" / "a.txt", "hello")
    assert path.read_text() == "hello"
    assert path.stat().st_mode & 0o777 == 0o644
    os.umask(0o027)
    assert write_json(tmp_path / "b.json", {"x": 1}).stat().st_mode & 0o777 == 0o640


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = write_json(tmp_path / "m.json", {"v": 1})

    def half(tmp):
        tmp.write_text('{"v": ')
        raise KeyboardInterrupt  # a kill in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_the_temporary_file_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    from PIL import Image

    seen = []

    def save(tmp):
        seen.append(tmp)
        Image.new("RGB", (4, 3)).save(tmp)  # Pillow picks the format from the suffix

    path = atomic_write(tmp_path / "p.png", save)
    assert seen[0].parent == tmp_path
    assert seen[0].suffix == ".png"
    assert seen[0].name.startswith(".p.png.")
    assert Image.open(path).format == "PNG"


def test_compact_and_indented_json(tmp_path):
    assert write_json(tmp_path / "c.json", [1, {"a": 2}], indent=None).read_text() == '[1,{"a":2}]\n'
    assert write_json(tmp_path / "i.json", {"a": 2}).read_text() == '{\n "a": 2\n}\n'
