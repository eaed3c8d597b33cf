"""What the readers share about keypoints: one object's list checked and cleaned, a keypoint spec built
from what a file or an option says, a box as the polygon of an instance that has no outline.

Every reader hands its keypoints to :func:`checked_keypoints`, so that a dataset's keypoints mean the
same whatever the format: COCO's flat ``[x1, y1, v1, ...]`` in the image's continuous pixel coordinates
(see :mod:`maskrcnn.data.keypoints`), every labelled point (``v > 0``) inside the image, every unlabelled
one at ``(0, 0)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from maskrcnn.data.dataset import DataError, ProblemLog
from maskrcnn.data.keypoints import KeypointSpec, check_keypoint_list

__all__ = ["box_polygon", "checked_keypoints", "keypoint_spec", "skeleton_pairs", "with_sigmas"]

# Annotation tools let a click land on the border's outer edge (as polygons get, see check_annotation): a
# point up to this far outside is moved onto the border; farther out it is another object's, or a
# conversion gone wrong.
_SLACK = 1.0


def checked_keypoints(
    values: Sequence[object],
    spec: KeypointSpec,
    height: int | None,
    width: int | None,
    log: ProblemLog,
    *,
    image: str,
    annotation: str,
) -> list[float] | None:
    """One object's flat ``[x, y, v] * K`` list, checked; ``None`` (an error reported) if unusable.

    Errors (the object cannot be used): the length is not ``3 * K``, a value is not a finite number, a
    visibility is not 0, 1 or 2 (:func:`~maskrcnn.data.keypoints.check_keypoint_list`). Cleaned, with a
    warning: a labelled point outside the ``width`` x ``height`` image (more than a pixel beyond its
    border) cannot be learnt where it is, and moving it would teach a wrong place, so it becomes
    unlabelled (``v = 0``). Cleaned silently: a point up to a pixel outside is moved onto the border, and
    an unlabelled point (``v = 0``) gets ``x = y = 0`` whatever the file said (its coordinates mean
    nothing). ``height`` / ``width`` ``None``: the size is not known, nothing is checked against it.

    Returns:
        ``3 * K`` floats.
    """
    k = spec.num_keypoints
    problem = check_keypoint_list(values, k)
    if problem:
        log.report("error", problem, image=image, annotation=annotation)
        return None
    out = [float(v) for v in values]  # type: ignore[arg-type]  # numbers: check_keypoint_list said so
    outside = []
    for i in range(k):
        x, y, v = out[3 * i : 3 * i + 3]
        if v == 0:
            out[3 * i : 3 * i + 2] = [0.0, 0.0]
            continue
        if height is None or width is None:
            continue
        if not (-_SLACK <= x <= width + _SLACK and -_SLACK <= y <= height + _SLACK):
            outside.append(f"{i} ({spec.names[i]}) at ({x:g}, {y:g})")
            out[3 * i : 3 * i + 3] = [0.0, 0.0, 0.0]
        else:
            out[3 * i : 3 * i + 2] = [min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))]
    if outside:
        log.report(
            "warning",
            f"keypoint{'s' if len(outside) > 1 else ''} {', '.join(outside)} outside the {width}x{height} "
            "image; left out (v = 0)",
            image=image,
            annotation=annotation,
        )
    return out


def keypoint_spec(
    names: Sequence[str],
    skeleton: Sequence[tuple[int, int]] = (),
    flip_index: Sequence[int] | None = None,
    *,
    where: str,
) -> KeypointSpec:
    """A :class:`~maskrcnn.data.keypoints.KeypointSpec`, its complaints (no names, repeated names, a
    skeleton edge or a flip index out of range) raised as :class:`DataError` starting with ``where``
    (the file, the field)."""
    try:
        return KeypointSpec(
            tuple(names),
            tuple((int(a), int(b)) for a, b in skeleton),
            tuple(flip_index) if flip_index is not None else None,
        )
    except ValueError as e:
        raise DataError(f"{where}: {str(e).removeprefix('KeypointSpec: ')}") from None


def skeleton_pairs(
    edges: Sequence[str] | Sequence[Sequence[int]], names: Sequence[str], *, where: str
) -> list[tuple[int, int]]:
    """A reader option's skeleton as 0-based pairs: each edge ``"a-b"`` with ``a``, ``b`` keypoint names
    or 0-based indices (``"nose-left_eye"``, ``"0-1"``; a name may itself hold ``-``), or a pair of
    indices ``[0, 1]``.

    Raises:
        DataError: an edge that is not two keypoints of ``names`` (named with ``where``, the option).
    """
    position = {name: i for i, name in enumerate(names)}

    def index(text: str) -> int | None:
        text = text.strip()
        if text in position:
            return position[text]
        return int(text) if text.isdigit() and int(text) < len(names) else None

    pairs = []
    for edge in edges:
        if isinstance(edge, str):
            # Every place the text can be cut at a "-" into two keypoints: exactly one must exist.
            cuts = [
                (a, b)
                for i, char in enumerate(edge)
                if char == "-"
                and (a := index(edge[:i])) is not None
                and (b := index(edge[i + 1 :])) is not None
            ]
            if len(cuts) != 1:
                why = "is not" if not cuts else "can be read as more than one pair of"
                raise DataError(
                    f"{where}: edge {edge!r} {why} two keypoints 'a-b' (names or indices 0..{len(names) - 1} "
                    f"of {list(names)})"
                )
            pairs.append(cuts[0])
        elif len(edge) == 2 and all(isinstance(v, int) and 0 <= v < len(names) for v in edge):
            pairs.append((int(edge[0]), int(edge[1])))
        else:
            raise DataError(f"{where}: edge {list(edge)!r} is not two keypoint indices 0..{len(names) - 1}")
    return pairs


def box_polygon(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """The rectangle ``x0..x1`` by ``y0..y1`` (pixels) as a one-part polygon: the segmentation of an
    instance that only has a box (a COCO annotation without ``segmentation``, a YOLO pose label)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def with_sigmas(spec: KeypointSpec | None, sigmas: Sequence[float] | None, where: str) -> KeypointSpec | None:
    """``spec`` with the OKS sigmas a reader was given (``keypoint_sigmas=``: one per keypoint, how precisely
    each is placed), or ``spec`` itself without them.

    Raises:
        DataError: sigmas for data without keypoints, of another count, or not all positive.
    """
    if sigmas is None:
        return spec
    if spec is None:
        raise DataError(f"{where}: keypoint_sigmas given, but the data has no keypoints")
    values = [float(s) for s in sigmas]
    if len(values) != spec.num_keypoints or min(values) <= 0:
        raise DataError(
            f"{where}: keypoint_sigmas={values}: expected {spec.num_keypoints} positive values, one per "
            f"keypoint ({', '.join(spec.names)})"
        )
    return dataclasses.replace(spec, sigmas=tuple(values))
