"""Named weights: the cache folder, finding a file, fetching it from a server on 127.0.0.1, offline."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from maskrcnn.weights import REGISTRY, WeightsEntry, WeightsUnavailable, cache_dir, find, register
from maskrcnn.weights.cache import ResolvedWeights, cached_file, fetch, resolve_weights
from maskrcnn.weights.download import DownloadError
from tests.http_server import serve

CONTENT = bytes(range(256)) * 2000  # 512 KB
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def home(weights_home):
    return weights_home


@pytest.fixture
def server():
    with serve({"/team-model-1234abcd.pth": CONTENT}) as served:
        yield served


def _entry(base: str, sha256: str = SHA, path: str = "/team-model-1234abcd.pth") -> WeightsEntry:
    entry = WeightsEntry(
        name="team-model",
        file_name="team-model-1234abcd.pth",
        url=base + path,
        sha256=sha256,
        kind="detection",
        architecture="maskrcnn_resnet50_fpn",
        num_classes=4,
        size_mb=0.5,
        summary="our own",
        classes=("square", "circle", "triangle"),
        aliases=("ours",),
    )
    register(entry)
    return entry


def test_the_cache_folder(monkeypatch, tmp_path, home):
    assert cache_dir() == home
    monkeypatch.delenv("MASKRCNN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "maskrcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "maskrcnn"


def test_names_aliases_and_file_names_find_the_entries():
    assert find("coco").file_name == "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert find("COCO-V2").architecture == "maskrcnn_resnet50_fpn_v2"
    assert find("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth").name == "coco"
    assert find("resnet50-0676ba61").name == "imagenet-r50"
    assert find("imagenet-x101").sha256 == "8ba56ff5"
    assert find("nothing") is None
    for entry in REGISTRY.values():  # each published file name carries the start of its digest
        assert entry.file_name.rsplit("-", 1)[1].split(".")[0] == entry.sha256[:8]
        assert entry.url.endswith("/" + entry.file_name)


def test_register_refuses_a_name_that_selects_another_entry(server):
    entry = _entry(server[0])
    with pytest.raises(ValueError, match="'coco' already names 'coco'"):
        register(WeightsEntry(**{**entry.__dict__, "name": "mine", "aliases": ("coco",)}))


def test_resolving_paths_and_names(tmp_path):
    own = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    own.write_bytes(b"x")
    assert resolve_weights(own).entry.name == "coco"  # a file the user keeps, known by its name
    other = tmp_path / "model.pth"
    other.write_bytes(b"x")
    assert resolve_weights(str(other)) == ResolvedWeights(other, None)
    with pytest.raises(
        FileNotFoundError, match=r"weights runs/x/last.safetensors: no such file \(nor a known"
    ):
        resolve_weights("runs/x/last.safetensors")
    with pytest.raises(
        ValueError, match=r"weights 'cocoa': no such file, and not a known name \(coco, coco-v2"
    ):
        resolve_weights("cocoa")


def test_a_named_file_is_downloaded_once_into_the_cache(server, home):
    base, state = server
    entry = _entry(base)
    path = resolve_weights("ours", progress=False).path
    assert path == home / "weights" / "team-model-1234abcd.pth"
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert cached_file(entry) == path
    assert resolve_weights("team-model", progress=False).path == path
    assert len(state.requests) == 1  # the second time from the cache


def test_a_wrong_hash_leaves_nothing_in_the_cache(server, home):
    base, _ = server
    _entry(base, sha256="0" * 64)
    with pytest.raises(DownloadError, match=rf"expected {'0' * 64}, got {SHA}"):
        fetch(find("ours"), progress=False)
    assert not any((home / "weights").iterdir())


def test_an_interrupted_download_resumes(server, home):
    base, state = server
    entry = _entry(base)
    state.cut_after = 100_000
    with pytest.raises(DownloadError, match=r"interrupted after .* run the same command again to resume"):
        fetch(entry, progress=False)
    assert (home / "weights" / "team-model-1234abcd.pth.part").stat().st_size == 100_000
    assert fetch(entry, progress=False).read_bytes() == CONTENT
    assert state.requests[-1][1] == "bytes=100000-"


def test_unreachable_or_missing_files_say_how_to_get_them_by_hand(server, home):
    base, _ = server
    entry = _entry(base, path="/gone.pth")
    target = home / "weights" / "team-model-1234abcd.pth"
    with pytest.raises(WeightsUnavailable) as error:
        fetch(entry, progress=False)
    message = str(error.value)
    assert f"cannot download team-model (team-model-1234abcd.pth): {base}/gone.pth: HTTP 404" in message
    assert f"fetch {base}/gone.pth on a machine that has one and put it at {target}" in message
    assert "(or pass the file's path to --weights)" in message
    assert not any((home / "weights").iterdir())


def test_offline_mode_never_tries_the_network(server, monkeypatch, home):
    base, state = server
    entry = _entry(base)
    monkeypatch.setenv("MASKRCNN_OFFLINE", "1")
    with pytest.raises(
        WeightsUnavailable, match="is not in the cache and MASKRCNN_OFFLINE is set; to use it"
    ):
        fetch(entry, progress=False)
    assert state.requests == []
    # Put by hand where the message says: found, verified, used.
    target = home / "weights" / entry.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(CONTENT)
    assert fetch(entry, progress=False) == target


def test_files_torchvision_downloaded_are_used_where_they_lie(server, tmp_path):
    base, state = server
    entry = _entry(base)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / entry.file_name).write_bytes(CONTENT)
    assert fetch(entry, progress=False) == hub / entry.file_name
    assert state.requests == []


def test_a_wrong_file_in_the_cache_is_named_not_used(server, home):
    base, state = server
    entry = _entry(base)
    target = home / "weights" / entry.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(CONTENT[:1000])
    actual = hashlib.sha256(CONTENT[:1000]).hexdigest()
    with pytest.raises(
        WeightsUnavailable, match=rf"{target} is not team-model .*: SHA-256 {actual}, expected {SHA}"
    ):
        fetch(entry, progress=False)
    assert target.is_file()  # the user's file: not deleted behind their back
    assert state.requests == []


def test_processes_that_fetch_at_once_download_once(server, home):
    """As the processes of a torchrun launch do: the first downloads, the others wait and find it."""
    base, state = server
    entry = _entry(base)
    state.delay = 0.3
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: fetch(entry, progress=False), range(3)))
    assert paths == [home / "weights" / entry.file_name] * 3
    assert paths[0].read_bytes() == CONTENT
    assert len(state.requests) == 1
