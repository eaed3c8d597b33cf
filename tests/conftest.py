from __future__ import annotations

import pytest
import torch
from hypothesis import settings

# Ops tests must be reproducible and must not depend on how busy the machine is.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one thread (``pytestmark = pytest.mark.usefixtures("one_thread")`` for a module):
    they take milliseconds there, while on a busy shared machine two threads spend most of their time
    waiting for each other, and results must not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    """An empty weights cache (``MASKRCNN_HOME``) and torch hub of the test's own, online, no proxy
    between the test and its server on 127.0.0.1, and the registry as it was once the test is done."""
    from maskrcnn.weights import REGISTRY

    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MASKRCNN_OFFLINE", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    saved = dict(REGISTRY)
    yield tmp_path / "home"
    REGISTRY.clear()  # what a test registered stays in the test
    REGISTRY.update(saved)
