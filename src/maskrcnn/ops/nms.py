"""Greedy non-maximum suppression, exact and vectorised.

The classic algorithm: visit boxes by decreasing score; keep a box unless a box kept before it overlaps it
with IoU > threshold. IoU is ``inter / (area_i + area_j - inter)`` in the boxes' dtype, the formula of
the reference kernels, so exactly the same pairs cross the threshold. Equal scores are visited in index
order.

Two exact strategies share one resolution step, and the cheaper one for the input is used:

* **sparse** (the usual case): only pairs that *can* exceed the threshold are compared. If
  ``IoU > t`` then the boxes overlap along x by more than ``t * max(w_i, w_j)``, so with boxes sorted by
  ``x1`` the partners of box ``i`` lie in the window ``x1_j < x1_i + (1 - t) * w_i`` (likewise for y;
  the axis giving fewer candidates is used). Candidate pairs are enumerated window by window, their IoU
  computed, and the overlapping ones become "suppression edges" from the higher- to the lower-scored box.
* **dense**: when boxes pile up so much that the windows hold most pairs, the full IoU between each
  block of 256 score-sorted boxes and the still-alive boxes after it is computed instead; heavy overlap
  means most boxes die early, so few pairs remain.

Resolution, by blocks of score-sorted boxes: inside a block, "kept" is the fixed point of
``keep[j] = alive[j] and not any(keep[i] and suppresses[i, j] for i < j)``. Since ``keep[j]`` depends only
on earlier entries the system is triangular, so its fixed point is unique and is the greedy answer;
iterating from ``keep = alive`` reaches it in at most (longest chain of suppressions) vectorised steps.
The block's kept boxes then remove the later boxes they suppress.

``batched_nms`` is the same with pairs restricted to one category (sparse), or categories padded side by
side in a ``[G, m]`` layout (dense), so boxes of different categories never meet.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batched_nms", "nms"]

_BLOCK = 256
# Most candidate pairs (sparse) or IoU entries (dense) evaluated at once: bounds temporary memory.
_MAX_PAIRS = 1 << 20
# The sparse strategy is used while the windows hold at most this fraction of all pairs (beyond it the
# boxes pile up, most of them die early, and the dense strategy is cheaper) and at most _MAX_CANDIDATES
# pairs (which bounds the memory of the suppression edges).
_SPARSE_MAX_FRACTION = 1 / 8
_MAX_CANDIDATES = 1 << 23
# Rows per dense IoU block of the sparse strategy, and the mean window length up to which candidate
# pairs are listed one by one instead.
_SHORT_WINDOW = 32
_ROWS = 64


def _check(boxes: Tensor, scores: Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be [N, 4], got shape {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"{name}: scores must be [N] for [N, 4] boxes, got {list(scores.shape)}")


def _iou_above(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor, threshold: float) -> Tensor:
    """Elementwise ``IoU(a, b) > threshold`` for broadcastable ``[..., 4]`` boxes and ``[...]`` areas."""
    xx1 = torch.maximum(a[..., 0], b[..., 0])
    yy1 = torch.maximum(a[..., 1], b[..., 1])
    xx2 = torch.minimum(a[..., 2], b[..., 2])
    yy2 = torch.minimum(a[..., 3], b[..., 3])
    inter = (xx2 - xx1).clamp_(min=0) * (yy2 - yy1).clamp_(min=0)
    # Two zero-area boxes give 0/0 = nan, which is not > threshold: neither suppresses the other.
    return (inter / (area_a + area_b - inter)) > threshold


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _resolve_block(alive: Tensor, suppresses: Tensor) -> Tensor:
    """Greedy answer inside one block.

    Args:
        alive: ``bool[G, b]``, boxes not removed by earlier blocks, in score order.
        suppresses: ``bool[G, b, b]``, ``[g, i, j]`` True when box ``i`` (earlier) would remove box ``j``.

    Returns:
        ``bool[G, b]`` kept boxes.
    """
    kept = alive
    while True:
        new = alive & ~(suppresses & kept[:, :, None]).any(dim=1)
        if torch.equal(new, kept):
            return kept
        kept = new


# ----------------------------------------------------------------------------------------------------
# Sparse strategy


def _windows(boxes: Tensor, groups: Tensor | None, threshold: float, axis: int) -> tuple[Tensor, Tensor]:
    """Sort boxes along ``axis`` (within groups) and find each box's window of possible partners.

    Returns:
        ``(perm, count)``: ``perm[p]`` is the box at sorted position ``p``; the candidates of position
        ``p`` are positions ``p + 1 .. p + count[p]``.
    """
    lo = boxes[:, axis].double()
    size = boxes[:, axis + 2].double() - lo
    # Widen the window slightly so that float rounding in the IoU can never make a pair cross the
    # threshold outside it.
    reach = (1.0 - threshold + 1e-4) * size + 1e-6 * (lo.abs() + size.abs()) + 1e-12
    key = lo
    if groups is not None:
        # Sort by (group, lo) with one float64 key: groups are spaced further apart than any window.
        _, dense_group = torch.unique(groups, return_inverse=True)
        span = float((lo.max() - lo.min()) + reach.clamp(min=0).max()) + 1.0
        key = dense_group.double() * span + (lo - lo.min())
    perm = torch.sort(key, stable=True).indices
    key_sorted = key[perm]
    end = key_sorted + reach[perm]
    hi = torch.searchsorted(key_sorted, end, right=True)
    position = torch.arange(boxes.shape[0], device=boxes.device)
    count = (hi - position - 1).clamp(min=0)
    return perm, count


def _edges_from_pairs(boxes: Tensor, perm: Tensor, count: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Suppression edges when windows are short: every candidate pair is listed and tested.

    Costs a few vectorised operations per candidate pair and no Python loop (beyond chunks of
    ``_MAX_PAIRS`` pairs), which beats dense blocks when windows hold a handful of boxes, as they do
    per category in ``batched_nms``.

    Returns:
        ``(u, v)``: ``int64[E]`` indices into ``boxes`` with ``u < v``.
    """
    n = boxes.shape[0]
    device = boxes.device
    coords = boxes[perm].t().contiguous()  # [4, n] in sorted order
    area = (coords[2] - coords[0]) * (coords[3] - coords[1])
    ends = torch.cumsum(count, 0)
    us, vs = [], []
    p0 = 0
    while p0 < n:
        # Positions [p0, p1) whose candidates fit in one chunk (at least one position).
        done = int(ends[p0 - 1]) if p0 else 0
        p1 = min(max(int(torch.searchsorted(ends, done + _MAX_PAIRS, right=True)), p0 + 1), n)
        pos_count = count[p0:p1]
        first = torch.repeat_interleave(torch.arange(p0, p1, device=device), pos_count)
        run_start = torch.repeat_interleave(torch.cumsum(pos_count, 0) - pos_count, pos_count)
        second = first + 1 + (torch.arange(first.numel(), device=device) - run_start)
        a = coords.index_select(1, first)
        b = coords.index_select(1, second)
        inter = torch.minimum(a[2], b[2]).sub_(torch.maximum(a[0], b[0])).clamp_(min=0)
        inter.mul_(torch.minimum(a[3], b[3]).sub_(torch.maximum(a[1], b[1])).clamp_(min=0))
        union = (area.index_select(0, first) + area.index_select(0, second)).sub_(inter)
        hit = (inter.div_(union) > threshold).nonzero().squeeze(1)
        i, j = perm[first[hit]], perm[second[hit]]
        us.append(torch.minimum(i, j))
        vs.append(torch.maximum(i, j))
        p0 = p1
    return torch.cat(us), torch.cat(vs)


def _edges_from_blocks(boxes: Tensor, perm: Tensor, count: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """All pairs inside the windows whose IoU exceeds the threshold.

    Sorted positions are taken ``_BLOCK`` at a time; inside such a tile, rows are ordered by window end
    and cut into chunks of ``_ROWS`` so that each chunk is compared, as one dense IoU block, with the
    contiguous run of sorted positions its windows cover. Rows with short windows thus never pay for the
    long windows of large boxes in the same tile.

    Returns:
        ``(u, v)``: ``int64[E]`` indices into ``boxes`` with ``u < v`` (``u`` scores higher).
    """
    n = boxes.shape[0]
    device = boxes.device
    position = torch.arange(n, device=device)
    hi = position + 1 + count  # exclusive end of each window, in sorted positions
    coords = boxes[perm].t().contiguous()  # [4, n], sorted; rows of one coordinate are contiguous
    area = (coords[2] - coords[0]) * (coords[3] - coords[1])
    us, vs = [], []
    for p0 in range(0, n, _BLOCK):
        p1 = min(p0 + _BLOCK, n)
        if int(count[p0:p1].max()) == 0:
            continue
        tile_rows = p0 + torch.argsort(hi[p0:p1])
        tile_hi = hi[tile_rows]
        for r0 in range(0, p1 - p0, _ROWS):
            rows = tile_rows[r0 : r0 + _ROWS]
            rows_hi = tile_hi[r0 : r0 + _ROWS]
            c0, c1 = p0 + 1, int(rows_hi[-1])
            if c1 <= c0:
                continue
            rc = coords.index_select(1, rows)[:, :, None]  # [4, R, 1]
            cc = coords[:, c0:c1][:, None, :]  # [4, 1, Q]
            inter = torch.minimum(rc[2], cc[2]).sub_(torch.maximum(rc[0], cc[0])).clamp_(min=0)
            inter.mul_(torch.minimum(rc[3], cc[3]).sub_(torch.maximum(rc[1], cc[1])).clamp_(min=0))
            union = (area.index_select(0, rows)[:, None] + area[None, c0:c1]).sub_(inter)
            # Same arithmetic as _iou_above; nan (two zero-area boxes) is not > threshold.
            r, c = (inter.div_(union) > threshold).nonzero(as_tuple=True)
            # Keep pairs seen from their earlier position and inside that position's window (which
            # also stops at its group's end); the block computes a few more to stay rectangular.
            row, col = rows[r], c0 + c
            inside = (col > row) & (col < rows_hi[r])
            i, j = perm[row[inside]], perm[col[inside]]
            us.append(torch.minimum(i, j))
            vs.append(torch.maximum(i, j))
    if not us:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return empty, empty
    return torch.cat(us), torch.cat(vs)


def _greedy_from_edges(u: Tensor, v: Tensor, n: int) -> Tensor:
    """Greedy NMS from suppression edges ``u -> v`` (``u < v``) over ``n`` score-sorted boxes.

    Rounds over the whole graph: a box is removed as soon as a kept box suppresses it, and kept as soon
    as every box that could suppress it is removed. By induction on the score order this is the greedy
    answer, and every round decides at least the highest-scored undecided box that still has a live
    suppressor, so it ends within (longest chain of suppressions) rounds; decided edges are dropped as
    it goes.

    Returns:
        ``bool[n]``, True for kept boxes.
    """
    device = u.device
    kept = torch.zeros(n, dtype=torch.bool, device=device)
    removed = torch.zeros(n, dtype=torch.bool, device=device)
    while u.numel():
        undecided_u = ~(kept[u] | removed[u])
        waiting = torch.bincount(v[undecided_u], minlength=n) > 0
        killed = torch.zeros(n, dtype=torch.bool, device=device)
        killed[v[kept[u]]] = True
        undecided = ~(kept | removed)
        removed |= undecided & killed
        kept |= undecided & ~killed & ~waiting
        live = ~(kept[v] | removed[v] | removed[u])
        u, v = u[live], v[live]
    # Boxes left undecided have no live suppressor: all of theirs were removed, or they had none.
    return ~removed


# ----------------------------------------------------------------------------------------------------
# Dense strategy


def _greedy_dense_padded(boxes: Tensor, valid: Tensor, threshold: float) -> Tensor:
    """Greedy NMS of ``G`` independent problems laid side by side.

    Args:
        boxes: ``[G, m, 4]`` boxes, sorted by decreasing score within each problem.
        valid: ``bool[G, m]``, False for padding.
        threshold: IoU above which the lower-scored box is removed.

    Returns:
        ``bool[G, m]``, True for the kept boxes.
    """
    m = valid.shape[1]
    area = _area(boxes)
    removed = ~valid
    keep = torch.zeros_like(valid)
    for start in range(0, m, _BLOCK):
        end = min(start + _BLOCK, m)
        alive = ~removed[:, start:end]
        if not bool(alive.any()):
            continue
        blk, blk_area = boxes[:, start:end], area[:, start:end]
        earlier = torch.ones(end - start, end - start, dtype=torch.bool, device=boxes.device).triu_(1)
        pairwise = _iou_above(
            blk[:, :, None], blk_area[:, :, None], blk[:, None], blk_area[:, None], threshold
        )
        kept = _resolve_block(alive, pairwise & earlier)
        keep[:, start:end] = kept
        if end < m:
            _remove_later(boxes, area, removed, blk, blk_area, kept, end, threshold)
    return keep


def _remove_later(
    boxes: Tensor,
    area: Tensor,
    removed: Tensor,
    blk: Tensor,
    blk_area: Tensor,
    kept: Tensor,
    end: int,
    threshold: float,
) -> None:
    """Mark (in place) the boxes after ``end`` that a kept box of the block overlaps."""
    groups, m = removed.shape
    if groups == 1:
        # One problem: compare only the kept boxes with the boxes still alive.
        kb, ka = blk[0][kept[0]], blk_area[0][kept[0]]
        if kb.shape[0] == 0:
            return
        later = end + torch.where(~removed[0, end:])[0]
        step = max(_MAX_PAIRS // kb.shape[0], 1)
        for s in range(0, later.numel(), step):
            idx = later[s : s + step]
            hit = _iou_above(kb[:, None], ka[:, None], boxes[0, idx][None], area[0, idx][None], threshold)
            removed[0, idx[hit.any(dim=0)]] = True
        return
    step = max(_MAX_PAIRS // (groups * blk.shape[1]), 1)
    for s in range(end, m, step):
        e = min(s + step, m)
        over = _iou_above(
            blk[:, :, None], blk_area[:, :, None], boxes[:, None, s:e], area[:, None, s:e], threshold
        )
        removed[:, s:e] |= (over & kept[:, :, None]).any(dim=1)


def _greedy_dense(boxes: Tensor, groups: Tensor | None, threshold: float) -> Tensor:
    """Dense strategy over score-sorted ``[n, 4]`` boxes; categories padded side by side. ``bool[n]``."""
    n = boxes.shape[0]
    device = boxes.device
    if groups is None:
        return _greedy_dense_padded(
            boxes[None], torch.ones(1, n, dtype=torch.bool, device=device), threshold
        )[0]
    by_group = torch.sort(groups, stable=True).indices  # score order kept inside each group
    _, counts = torch.unique_consecutive(groups[by_group], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    keep = torch.zeros(n, dtype=torch.bool, device=device)
    # Buckets of groups whose sizes share a power of two, padded to the bucket's largest group, so that
    # one large category does not pad eighty small ones.
    bucket = torch.ceil(torch.log2(counts.double())).to(torch.int64)
    for b in torch.unique(bucket).tolist():
        members = torch.where(bucket == b)[0]
        g_counts, g_starts = counts[members], starts[members]
        slot = torch.arange(int(g_counts.max()), device=device)
        valid = slot[None, :] < g_counts[:, None]
        index = by_group[torch.where(valid, g_starts[:, None] + slot[None, :], 0)]  # [G, m]
        kept = _greedy_dense_padded(boxes[index], valid, threshold)
        keep[index[kept]] = True
    return keep


# ----------------------------------------------------------------------------------------------------
# Public API


def _greedy(boxes: Tensor, groups: Tensor | None, threshold: float) -> Tensor:
    """Kept mask of score-sorted ``[n, 4]`` boxes (optionally per group), choosing the strategy."""
    n = boxes.shape[0]
    if threshold >= 0:
        # Windows along x or along y, whichever holds fewer candidate pairs.
        perm, count = min(
            (_windows(boxes, groups, threshold, axis) for axis in (0, 1)), key=lambda w: int(w[1].sum())
        )
        total = int(count.sum())
        if total <= min(_SPARSE_MAX_FRACTION * n * (n - 1) / 2, _MAX_CANDIDATES):
            # Short windows: list the pairs; long ones: dense blocks over contiguous runs of positions.
            edges = _edges_from_pairs if total <= _SHORT_WINDOW * n else _edges_from_blocks
            u, v = edges(boxes, perm, count, threshold)
            return _greedy_from_edges(u, v, n)
    # A negative threshold suppresses non-overlapping boxes too, which the windows do not cover.
    return _greedy_dense(boxes, groups, threshold)


def _score_order(scores: Tensor) -> Tensor:
    # Stable, so that equal scores are visited in index order.
    return torch.sort(scores.detach(), descending=True, stable=True).indices


def _working_boxes(boxes: Tensor) -> Tensor:
    # Indices are not differentiable: leave the autograd graph. Half-precision IoU is too coarse to
    # threshold reliably; compute in float32 at least.
    boxes = boxes.detach()
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression (torchvision's ``nms``).

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores; equal scores are visited in index order.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scored box is ``> iou_threshold``.

    Returns:
        ``int64[K]`` indices of the kept boxes, by decreasing score.
    """
    _check(boxes, scores, "nms")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)
    return order[_greedy(_working_boxes(boxes)[order], None, float(iou_threshold))]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression within each category, independently (torchvision's ``batched_nms``).

    Boxes of different categories never suppress each other. Unlike the coordinate-offset trick, the
    IoUs compared are exactly those :func:`nms` computes on each category alone.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores.
        idxs: ``int[N]`` category (or image, or any grouping key) of each box.
        iou_threshold: IoU above which the lower-scored box of a pair is dropped.

    Returns:
        ``int64[K]`` indices of the kept boxes, by decreasing score over all categories.
    """
    _check(boxes, scores, "batched_nms")
    if idxs.shape != scores.shape:
        raise ValueError(f"batched_nms: idxs must be [N] like scores, got {list(idxs.shape)}")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)
    return order[_greedy(_working_boxes(boxes)[order], idxs[order], float(iou_threshold))]
