"""The report's page in a real browser (headless Chromium; skipped where none is installed, CI installs
it): the grid shows the expected images page by page, the class filter and the score slider change
what is shown, the full-size view lists each instance, masks.js decodes masks as pycocotools does, and
a screenshot is taken.

The page keeps its state in the address's #fragment, so each state is loaded as it is and read back
from the DOM once the page's scripts have run (``--dump-dom``)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from importlib import resources

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.engine.evaluation import evaluate, write_report
from maskrcnn.engine.viewer import evaluation_report, read_evaluation
from tests.engine.evaluation.helpers import Oracle, Rectangles, detection
from tests.engine.viewer.helpers import chromium, dump_dom, screenshot
from tests.engine.viewer.test_site import read_index

pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium or Chrome installed")

COUNT = 60  # more than a page (48)


def _scene():
    """Image i: an "a" rectangle, a "b" one, or both (i % 3), at places that move with i."""
    scene = []
    for i in range(COUNT):
        a = (1, (2 + i % 5, 18 + i % 5, 3, 20))
        b = (2, (20, 36, 25 + i % 7, 44))
        scene.append([a] if i % 3 == 0 else [b] if i % 3 == 1 else [a, b])
    return scene


class _Page(HTMLParser):
    """The grid's cards, the status line and the full-size view's state, from the dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.shown: dict[str, str] = {}
        self.view_hidden = None
        self.rows = 0
        self.body: dict[str, str] = {}
        self._in_view = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "figure" and "card" in a.get("class", "").split():
            self.cards.append(a)
        if a.get("id") == "shown":
            self.shown = a
        if a.get("id") == "view":
            self.view_hidden = "hidden" in a
            self._in_view = True
        if tag == "tr" and self._in_view:
            self.rows += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    scene = _scene()
    oracle = Oracle(scene)
    # Scores from 0.3 to 0.9 by image, so that the slider has something to hide.
    oracle.dets = [
        detection([o[1] for o in objects], [o[0] for o in objects], [0.3 + 0.6 * (i % 10) / 9] * len(objects))
        for i, objects in enumerate(scene)
    ]
    write_report(evaluate(oracle, Rectangles(scene), progress=False), root / "eval", ["a", "b"])
    index = evaluation_report(
        read_evaluation(root / "eval"), root / "report", dataset=Rectangles(scene), title="rectangles"
    )
    return index, read_index(index.parent)


def _load(index, fragment: str = "") -> _Page:
    page = _Page(dump_dom(index.as_uri() + (f"#{fragment}" if fragment else "")))
    assert page.body.get("data-state") == "ready", page.body
    return page


def test_the_grid_shows_every_image_a_page_at_a_time(report):
    index, data = report
    first = _load(index)
    assert first.shown["data-images"] == str(COUNT)
    assert (first.shown["data-page"], first.shown["data-pages"]) == ("1", "2")
    assert [c["data-image"] for c in first.cards] == [str(n) for n in range(1, 49)]
    second = _load(index, "page=2")
    assert [c["data-image"] for c in second.cards] == [str(n) for n in range(49, COUNT + 1)]
    for card in first.cards:
        entry = data["images"][int(card["data-image"]) - 1]
        assert card["data-objects"] == str(len(entry["gt"]))
        assert card["data-detections"] == str(sum(s >= 0.5 for _, s in entry["dt"]))  # the default 0.5


def test_the_class_filter_and_the_score_slider_change_what_is_shown(report):
    index, data = report
    images = data["images"]
    with_b = [
        n
        for n, e in enumerate(images, start=1)
        if 1 in e["gt"] or any(c == 1 for c, s in e["dt"] if s >= 0.5)
    ]
    page = _load(index, "class=b")
    assert page.shown["data-images"] == str(len(with_b))
    assert len(with_b) < COUNT
    assert [int(c["data-image"]) for c in page.cards] == with_b[:48]
    for card in page.cards:  # only b's instances are counted (and drawn)
        entry = images[int(card["data-image"]) - 1]
        assert card["data-objects"] == str(entry["gt"].count(1))
    totals = {}
    for score in (0.0, 0.6, 0.99):
        shown = _load(index, f"score={score}&page=1")
        totals[score] = int(shown.shown["data-detections"])
        expected = sum(s >= score for e in images[:48] for _, s in e["dt"])
        assert totals[score] == expected, score
    assert totals[0.0] > totals[0.6] > totals[0.99] == 0
    hidden = _load(index, "dt=0&gt=0")
    assert {(c["data-objects"], c["data-detections"]) for c in hidden.cards} == {("0", "0")}


def test_the_full_size_view_lists_each_shown_instance(report):
    index, data = report
    closed = _load(index)
    assert closed.view_hidden is True
    entry = data["images"][2]  # image 3: both classes, its detections at score 0.43
    page = _load(index, "view=3&score=0")
    assert page.view_hidden is False
    assert page.rows == 1 + len(entry["gt"]) + len(entry["dt"])  # the header, then one row each
    fewer = _load(index, "view=3&score=0.5")
    assert fewer.rows == 1 + len(entry["gt"])


def test_a_screenshot_of_the_grid_with_a_full_size_view(report, tmp_path):
    index, _ = report
    shot = screenshot(index.as_uri() + "#sort=ap&view=3", tmp_path / "report.png", size=(1280, 2400))
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (2400, 1280, 3)
    assert pixels.std() > 20


def test_masks_js_decodes_and_paints_masks_as_pycocotools_does(tmp_path):
    rng = np.random.default_rng(0)
    height, width = 23, 17
    masks = [np.zeros((height, width), np.uint8), np.ones((height, width), np.uint8)]
    masks += [(rng.random((height, width)) < p).astype(np.uint8) for p in (0.1, 0.5, 0.9)]
    big = np.zeros((700, 900), np.uint8)  # runs longer than 5 characters' worth, and negative deltas
    big[100:650, 50:880] = 1
    texts = [mask_utils.encode(np.asfortranarray(m))["counts"].decode("ascii") for m in [*masks, big]]
    script = resources.files("maskrcnn.engine.viewer").joinpath("assets", "masks.js").read_text()
    page = tmp_path / "masks.html"
    page.write_text(
        f"""<!DOCTYPE html><html><body><pre id="out"></pre><script>{script}</script><script>
const texts = {json.dumps(texts)};
const out = texts.slice(0, {len(masks)}).map((t) => {{
  const canvas = MaskrcnnMasks.maskCanvas(t, {height}, 1, {width}, {height}, [255, 0, 0]);
  const alpha = canvas.getContext("2d").getImageData(0, 0, {width}, {height}).data;
  let bits = "";
  for (let i = 3; i < alpha.length; i += 4) bits += alpha[i] ? "1" : "0";
  return bits;
}});
const runs = texts.map((t) => MaskrcnnMasks.decodeRle(t));
// Enlarged twice (the full-size view of a small image): every target pixel of a source pixel painted.
const big = MaskrcnnMasks.maskCanvas(texts[3], {height}, 2, {2 * width}, {2 * height}, [255, 0, 0]);
const alpha = big.getContext("2d").getImageData(0, 0, {2 * width}, {2 * height}).data;
let twice = "";
for (let i = 3; i < alpha.length; i += 4) twice += alpha[i] ? "1" : "0";
document.getElementById("out").textContent = JSON.stringify({{ out, runs, twice }});
</script></body></html>""",
        encoding="utf-8",
    )
    text = dump_dom(page.as_uri())
    result = json.loads(text.split('<pre id="out">', 1)[1].split("</pre>", 1)[0])
    for mask, bits in zip(masks, result["out"], strict=True):
        painted = np.array([c == "1" for c in bits]).reshape(height, width)  # row by row
        np.testing.assert_array_equal(painted, mask.astype(bool))
    twice = np.array([c == "1" for c in result["twice"]]).reshape(2 * height, 2 * width)
    np.testing.assert_array_equal(twice, np.kron(masks[3], np.ones((2, 2), np.uint8)).astype(bool))
    for m, runs in zip([*masks, big], result["runs"], strict=True):
        flat = m.flatten(order="F")
        assert sum(runs) == flat.size
        # The runs alternate zeros and ones, from zeros: rebuilt, they are the mask.
        rebuilt = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        np.testing.assert_array_equal(rebuilt, flat)
