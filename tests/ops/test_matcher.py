import torch

from maskrcnn.ops import BalancedPositiveNegativeSampler, Matcher

BELOW, BETWEEN = Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS


def test_thresholds_golden():
    iou = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.25, 0.0],
            [0.2, 0.65, 0.4, 0.29, 0.1],
        ]
    )
    assert Matcher(0.7, 0.3)(iou).tolist() == [0, BETWEEN, BETWEEN, BELOW, BELOW]
    assert Matcher(0.5, 0.5)(iou).tolist() == [0, 1, 0, BELOW, BELOW]


def test_low_quality_matches():
    iou = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],
            [0.1, 0.35, 0.35, 0.2],  # gt 1's best IoU is only 0.35, shared by predictions 1 and 2
            [0.0, 0.6, 0.0, 0.1],
        ]
    )
    # Without the option, gt 1 gets nothing: prediction 1 goes to gt 2 (0.6), prediction 2 is between.
    assert Matcher(0.7, 0.3)(iou).tolist() == [0, BETWEEN, BETWEEN, BELOW]
    # With it, every prediction that ties for a gt's best IoU gets its own best gt: prediction 1 -> gt 2
    # (its best, 0.6), prediction 2 -> gt 1, prediction 0 -> gt 0.
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [0, 2, 1, BELOW]


def test_empty_inputs():
    assert Matcher(0.5, 0.5)(torch.zeros(0, 4)).tolist() == [BELOW] * 4
    assert Matcher(0.5, 0.5)(torch.zeros(3, 0)).shape == (0,)


def test_sampler_counts_and_membership():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 20)
    sampler = BalancedPositiveNegativeSampler(batch_size_per_image=32, positive_fraction=0.25)
    pos, neg = sampler([labels], generator=torch.Generator().manual_seed(0))
    assert pos[0].dtype == torch.uint8
    assert int(pos[0].sum()) == 8
    assert int(neg[0].sum()) == 24
    assert bool((labels[pos[0].bool()] >= 1).all())
    assert bool((labels[neg[0].bool()] == 0).all())
    assert not bool((pos[0] & neg[0]).any())
    # Few positives: all of them, negatives fill the batch.
    few = torch.tensor([2] * 3 + [0] * 50)
    pos, neg = sampler([few, torch.tensor([0] * 5 + [-1] * 5)])
    assert int(pos[0].sum()) == 3
    assert int(neg[0].sum()) == 29
    assert int(pos[1].sum()) == 0
    assert int(neg[1].sum()) == 5
    assert sampler([torch.zeros(0, dtype=torch.int64)])[0][0].numel() == 0


def test_sampler_is_seeded():
    labels = torch.tensor([1] * 50 + [0] * 500)
    sampler = BalancedPositiveNegativeSampler(64, 0.5)
    a = sampler([labels], generator=torch.Generator().manual_seed(7))
    b = sampler([labels], generator=torch.Generator().manual_seed(7))
    c = sampler([labels], generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0][0], b[0][0])
    assert torch.equal(a[1][0], b[1][0])
    assert not torch.equal(a[1][0], c[1][0])
