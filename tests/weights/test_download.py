"""download() against a real HTTP server on 127.0.0.1: resuming, restarting, verifying, failing cleanly."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import stat

import pytest

from maskrcnn import __version__
from maskrcnn.weights.download import DownloadError, download, hash_matches, sha256_of
from tests.http_server import serve

PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOADS = {"/model.pth": PAYLOAD, "/tiny.bin": b"tiny", "/broken-chunks.pth": PAYLOAD}
CUT = 100_000
CHUNK = 64 * 1024  # several reads per file, so appending is exercised


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a proxy in the environment must not step in


@pytest.fixture
def server():
    """(base URL, State) of a server that lives for one test."""
    with serve(PAYLOADS) as served:
        yield served


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_plain_download_is_whole_verified_and_normally_readable(server, tmp_path):
    base, state = server
    target = tmp_path / "sub" / "model.pth"
    assert download(f"{base}/model.pth", target, sha256=SHA, progress=False, chunk_size=CHUNK) == target
    assert target.read_bytes() == PAYLOAD
    assert sha256_of(target, chunk=1000) == SHA
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    again = tmp_path / "again.pth"
    download(f"{base}/model.pth", again, sha256=SHA[:8].upper(), progress=False)  # the published prefix
    assert again.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["again.pth", "model.pth", "sub"]
    assert state.requests == [("/model.pth", None, f"maskrcnn/{__version__}")] * 2


def test_wrong_hash_deletes_the_file(server, tmp_path):
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(f"{base}/model.pth", tmp_path / "model.pth", sha256=wrong, progress=False)
    message = str(info.value)
    assert "model.pth" in message
    assert f"{base}/model.pth" in message
    assert f"expected {wrong}, got {SHA}" in message
    assert list(tmp_path.iterdir()) == []


def test_a_cut_connection_keeps_the_part_and_the_next_call_resumes(server, tmp_path, capsys):
    base, state = server
    target = tmp_path / "model.pth"
    state.cut_after = CUT
    with pytest.raises(DownloadError, match=r"interrupted after .* again to resume") as info:
        download(f"{base}/model.pth", target, sha256=SHA, progress=False, chunk_size=CHUNK)
    assert "model.pth" in str(info.value)
    assert "\n" not in str(info.value)
    part = tmp_path / "model.pth.part"
    assert part.read_bytes() == PAYLOAD[:CUT]
    assert not target.exists()

    capsys.readouterr()
    download(f"{base}/model.pth", target, sha256=SHA, progress=True, chunk_size=CHUNK)
    assert state.requests[-1][1] == f"bytes={CUT}-"
    assert len(state.requests) == 2
    assert target.read_bytes() == PAYLOAD
    assert sha256_of(target) == SHA
    assert not part.exists()
    bar = capsys.readouterr().err
    assert "model.pth:  33%" in bar  # the bar starts at what was already there
    assert "100%" in bar


def test_a_read_that_fails_midway_is_an_interruption_too(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match=r"interrupted after .*\(IncompleteRead\(.* again to resume"):
        download(f"{base}/broken-chunks.pth", tmp_path / "model.pth", sha256=SHA, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth.part"]  # kept for the next attempt
    assert (tmp_path / "model.pth.part").read_bytes() == PAYLOAD[:1000]  # with what did arrive


def test_a_server_without_ranges_sends_everything_again(server, tmp_path):
    base, state = server
    state.ranges = False
    (tmp_path / "model.pth.part").write_bytes(b"garbage" * 1000)
    download(f"{base}/model.pth", tmp_path / "model.pth", sha256=SHA, progress=False, chunk_size=CHUNK)
    assert state.requests[0][1] == "bytes=7000-"  # asked, but answered 200 with the whole file
    assert (tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


@pytest.mark.parametrize("extra", [0, 10])
def test_a_part_as_long_as_the_file_or_longer_is_discarded(server, tmp_path, extra):
    base, state = server
    (tmp_path / "model.pth.part").write_bytes(bytes(len(PAYLOAD) + extra))
    download(f"{base}/model.pth", tmp_path / "model.pth", sha256=SHA, progress=False)
    assert [r[1] for r in state.requests] == [f"bytes={len(PAYLOAD) + extra}-", None]  # 416, then afresh
    assert (tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_a_body_without_content_length_is_complete_when_it_ends(server, tmp_path):
    base, state = server
    state.content_length = False
    download(f"{base}/model.pth", tmp_path / "model.pth", sha256=SHA, progress=False, chunk_size=CHUNK)
    assert (tmp_path / "model.pth").read_bytes() == PAYLOAD


def test_http_error_names_url_and_status_and_writes_nothing(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError) as info:
        download(f"{base}/missing.pth", tmp_path / "missing.pth", sha256=SHA, progress=False)
    assert str(info.value) == f"{base}/missing.pth: HTTP 404 Not Found"
    assert list(tmp_path.iterdir()) == []
    part = tmp_path / "missing.pth.part"
    part.write_bytes(b"kept")  # an earlier attempt's bytes survive an error page
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing.pth", tmp_path / "missing.pth", sha256=SHA, progress=False)
    assert part.read_bytes() == b"kept"


def test_unreachable_host(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth"
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "model.pth", sha256=SHA, progress=False, timeout=2)
    message = str(info.value)
    assert message.startswith(f"cannot reach {url}: ")
    assert "refused" in message.lower()
    assert "\n" not in message
    assert "Errno" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["ftp://example.com/model.pth", "file:///tmp/model.pth", "model.pth"])
def test_only_http_and_https(tmp_path, url):
    with pytest.raises(ValueError, match="http"):
        download(url, tmp_path / "model.pth", sha256=SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_hash_matches():
    assert hash_matches(SHA, SHA)
    assert hash_matches(SHA, SHA[:8])
    assert hash_matches(SHA.upper(), SHA[:12].upper())
    assert not hash_matches(SHA, "f" * 64 if SHA[0] != "f" else "0" * 64)
    assert not hash_matches(SHA, SHA[1:9])
    for bad in (SHA[:7], "", "xyz12345", SHA + "0"):
        with pytest.raises(ValueError, match="8 to 64 hex digits"):
            hash_matches(SHA, bad)


def test_a_malformed_hash_fails_before_any_request(server, tmp_path):
    base, state = server
    with pytest.raises(ValueError, match="8 to 64 hex digits"):
        download(f"{base}/model.pth", tmp_path / "model.pth", sha256=SHA[:7], progress=False)
    assert state.requests == []
