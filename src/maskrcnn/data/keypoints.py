"""What a dataset's keypoints are: their names, the skeleton drawn between them, how a mirror image swaps
them, and how precisely each is placed (the OKS sigmas of the keypoint AP).

Keypoints travel in targets as ``keypoints`` float ``[N, K, 3]``: ``(x, y, v)`` per keypoint in the
image's continuous pixel coordinates (the same as the boxes': the left edge of the image is ``x = 0``,
the centre of the first pixel ``x = 0.5``), with COCO's visibility ``v``: 0 not labelled (``x = y = 0``),
1 labelled but hidden, 2 visible. Only ``v > 0`` keypoints are learnt and evaluated. Annotation files
store them as COCO does, one flat ``[x1, y1, v1, x2, y2, v2, ...]`` list per object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "COCO_SKELETON",
    "DEFAULT_SIGMA",
    "KeypointSpec",
    "check_keypoint_list",
    "mirrored_name",
]

COCO_KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
"""The 17 keypoints of COCO's ``person`` category, in the order of its annotations."""

# COCO's person skeleton (its ``categories[0].skeleton``, made 0-based).
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
"""pycocotools' per-keypoint OKS sigmas of COCO's 17 person keypoints."""

DEFAULT_SIGMA = 0.05
"""The OKS sigma of keypoints that are not COCO's person keypoints and for which the data gives none:
between COCO's sharpest (eyes, 0.025) and loosest (hips, 0.107); a keypoint ``2 * sigma * sqrt(area)``
pixels off scores OKS ``exp(-1/2)``."""

_SIDES = (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT"), ("l_", "r_"), ("L_", "R_"))


def mirrored_name(name: str) -> str:
    """The name of the keypoint that ``name`` becomes in a mirror image: ``left_eye`` <-> ``right_eye``,
    ``l_hand`` <-> ``r_hand``, ``frontLeft`` <-> ``frontRight``; a name without a side is its own."""
    for left, right in _SIDES:
        if left in name:
            return name.replace(left, right)
        if right in name:
            return name.replace(right, left)
    return name


@dataclass(frozen=True)
class KeypointSpec:
    """The keypoints of a dataset (one set for all its classes).

    Attributes:
        names: one name per keypoint, in the order of the annotations (``K = len(names)``).
        skeleton: pairs of 0-based keypoint indices joined by a line in pictures.
        flip_index: after a horizontal (or vertical) mirror, keypoint ``k`` is the one at
            ``flip_index[k]`` (YOLO's ``flip_idx``); ``None``: from the names (:func:`mirrored_name`).
        sigmas: the OKS sigma of each keypoint; ``None``: COCO's when the names are COCO's person
            keypoints, else :data:`DEFAULT_SIGMA` for each.
    """

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_index: tuple[int, ...] | None = None
    sigmas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise ValueError("KeypointSpec: no keypoint names")
        if len(set(self.names)) != k:
            raise ValueError(f"KeypointSpec: keypoint names repeat: {list(self.names)}")
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"KeypointSpec: skeleton edge ({a}, {b}) is outside keypoints 0..{k - 1}")
        if self.flip_index is not None and sorted(self.flip_index) != list(range(k)):
            raise ValueError(
                f"KeypointSpec: flip_index {list(self.flip_index)} must be a permutation of 0..{k - 1}"
            )
        if self.sigmas is not None and (len(self.sigmas) != k or min(self.sigmas) <= 0):
            raise ValueError(f"KeypointSpec: {len(self.sigmas)} sigmas for {k} keypoints (all must be > 0)")

    @classmethod
    def default(cls, num_keypoints: int) -> KeypointSpec:
        """COCO's person keypoints for 17, else ``kp0, kp1, ...`` without skeleton or mirror pairs."""
        if num_keypoints == len(COCO_KEYPOINT_NAMES):
            return cls(COCO_KEYPOINT_NAMES, COCO_SKELETON)
        return cls(tuple(f"kp{i}" for i in range(num_keypoints)))

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> list[int]:
        """:attr:`flip_index`, or the permutation the names imply (a name whose mirror is not among the
        names stays itself)."""
        if self.flip_index is not None:
            return list(self.flip_index)
        position = {name: i for i, name in enumerate(self.names)}
        return [position.get(mirrored_name(name), i) for i, name in enumerate(self.names)]

    def oks_sigmas(self) -> list[float]:
        """The per-keypoint OKS sigmas evaluation uses (see :attr:`sigmas`)."""
        if self.sigmas is not None:
            return list(self.sigmas)
        if tuple(self.names) == COCO_KEYPOINT_NAMES:
            return list(COCO_SIGMAS)
        return [DEFAULT_SIGMA] * self.num_keypoints

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (checkpoints and run folders keep the spec to draw and evaluate with)."""
        return {
            "names": list(self.names),
            "skeleton": [list(e) for e in self.skeleton],
            "flip_index": list(self.flip_index) if self.flip_index is not None else None,
            "sigmas": list(self.sigmas) if self.sigmas is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> KeypointSpec:
        """The inverse of :meth:`to_dict`."""
        skeleton = data.get("skeleton") or []
        flip = data.get("flip_index")
        sigmas = data.get("sigmas")
        return cls(
            tuple(str(n) for n in data["names"]),  # type: ignore[attr-defined]
            tuple((int(a), int(b)) for a, b in skeleton),  # type: ignore[attr-defined]
            tuple(int(i) for i in flip) if flip is not None else None,  # type: ignore[attr-defined]
            tuple(float(s) for s in sigmas) if sigmas is not None else None,  # type: ignore[attr-defined]
        )


def check_keypoint_list(values: Sequence[object], num_keypoints: int) -> str:
    """What is wrong with one object's flat ``[x, y, v] * K`` list ("" if nothing): the length, a
    non-finite or non-numeric value, a visibility outside 0..2."""
    if len(values) != 3 * num_keypoints:
        k = num_keypoints
        return f"has {len(values)} keypoint values; expected {3 * k} ({k} x (x, y, v))"
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"keypoint {i // 3} value {value!r} is not a number"
        if abs(float(value)) == float("inf"):
            return f"keypoint {i // 3} value {value!r} is not finite"
    for k in range(num_keypoints):
        v = values[3 * k + 2]
        if v not in (0, 1, 2):
            return f"keypoint {k} has visibility {v!r}; expected 0 (not labelled), 1 (hidden) or 2 (visible)"
    return ""
