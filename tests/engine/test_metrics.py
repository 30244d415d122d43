"""Shared metrics on cases with known answers: accuracy, ECE, panoptic quality, box IoU/GIoU, Hungarian matching,
Fréchet distance between Gaussians."""

import itertools
import math

import numpy as np
import pytest
import torch

from archzoo.engine.metrics import (
    accuracy,
    box_iou,
    calibration_bins,
    expected_calibration_error,
    frechet_distance,
    gaussian_statistics,
    generalized_box_iou,
    hungarian_match,
    panoptic_quality,
)


def test_top_k_accuracy_counts_targets_among_the_k_largest_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    target = torch.tensor([0, 2, 0, 2])                       # ranks of the target: 1st, 2nd, 3rd, 3rd
    assert accuracy(logits, target) == 25.0
    assert accuracy(logits, target, k=2) == 50.0
    assert accuracy(logits, target, k=3) == 100.0
    assert accuracy(logits, torch.tensor([0, -100, -100, 1]), ignore_index=-100) == 100.0


def test_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="k must be in 1..3"):
        accuracy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), k=4)
    with pytest.raises(ValueError, match=r"target: expected shape \(N=4\), got \(5\)"):
        accuracy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


def two_class_probs(confidence: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions of class 0 with the given confidence; the target is 0 where `correct`, else 1."""
    probs = torch.stack([confidence, 1 - confidence], 1).double()
    return probs, (~correct).long()


def test_ece_of_a_model_right_exactly_as_often_as_it_is_sure_is_zero():
    confidence = (torch.arange(5, 10).double() + 0.5) / 10     # 0.55 ... 0.95, one per bin of width 0.1
    conf = confidence.repeat_interleave(20)
    correct = torch.cat([torch.arange(20) < round(c.item() * 20) for c in confidence])
    assert expected_calibration_error(*two_class_probs(conf, correct), n_bins=10) == pytest.approx(0, abs=1e-12)


def test_ece_of_a_sampled_calibrated_model_is_near_zero():
    g = torch.Generator().manual_seed(0)
    conf = 0.5 + 0.5 * torch.rand(200_000, generator=g, dtype=torch.float64)
    correct = torch.rand(200_000, generator=g, dtype=torch.float64) < conf     # right with probability conf
    assert expected_calibration_error(*two_class_probs(conf, correct)) < 0.01


def test_ece_of_overconfident_models_is_the_gap_weighted_by_bin_mass():
    conf = torch.full((10,), 0.9)
    correct = torch.arange(10) < 6                                             # 90% sure, 60% right
    assert expected_calibration_error(*two_class_probs(conf, correct)) == pytest.approx(0.3)
    conf = torch.tensor([0.9] * 10 + [0.7] * 10)                               # half 0.9 sure and 50% right,
    correct = torch.cat([torch.arange(10) < 5, torch.arange(10) < 7])          # half 0.7 sure and 70% right
    assert expected_calibration_error(*two_class_probs(conf, correct)) == pytest.approx(0.5 * 0.4)


def test_calibration_bins_are_closed_on_the_right():
    conf = torch.tensor([0.75, 0.75 + 1e-9, 1.0], dtype=torch.float64)
    probs, target = two_class_probs(conf, torch.tensor([True, False, True]))
    acc, mean_conf, count = calibration_bins(probs, target, n_bins=8)           # ..., (5/8, 6/8], (6/8, 7/8], ...
    assert count.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert acc.tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert mean_conf[5:].tolist() == conf.tolist()
    with pytest.raises(ValueError, match="softmax"):
        calibration_bins(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_panoptic_quality_on_hand_made_masks():
    sem = torch.zeros(8, 8, dtype=torch.long)
    inst = torch.zeros(8, 8, dtype=torch.long)
    sem[1:5, 1:5], inst[1:5, 1:5] = 2, 1                                     # a 4x4 thing of class 2
    sem[5:8, 5:8], inst[5:8, 5:8] = 2, 2                                     # a 3x3 thing of class 2
    perfect = panoptic_quality([(sem, inst)], [(sem, inst)], 3, thing_ids=(2,))
    assert perfect["pq"] == 1.0 and perfect["sq"] == 1.0 and perfect["rq"] == 1.0

    p_sem, p_inst = sem.clone(), inst.clone()
    p_sem[1:5, 1:5], p_inst[1:5, 1:5] = 0, 0                                 # the big thing shifted right by one
    p_sem[1:5, 2:6], p_inst[1:5, 2:6] = 2, 1
    p_sem[5:8, 5:8], p_inst[5:8, 5:8] = -1, 0                                # the small thing left void
    p_sem[0, 7], p_inst[0, 7] = 1, 0                                         # a one-pixel stuff class 1 segment
    q = panoptic_quality([(p_sem, p_inst)], [(sem, inst)], 3, thing_ids=(2,))
    iou_thing = 12 / 20                                                      # 4x4 vs shifted 4x4
    gt_stuff, pred_stuff = 64 - 25, 64 - 16 - 9 - 1 - 4 + 4                  # class 0 pixels
    inter = 64 - 25 - 1 - 4                                                  # GT stuff not in pred's thing/stuff-1
    iou_stuff = inter / (gt_stuff + pred_stuff - inter)
    assert q["per_class"][2] == {"pq": pytest.approx(iou_thing / 1.5), "sq": pytest.approx(iou_thing),
                                 "rq": pytest.approx(1 / 1.5), "tp": 1, "fp": 0, "fn": 1}
    assert q["per_class"][0]["pq"] == pytest.approx(iou_stuff)
    assert q["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 0}
    assert q["pq"] == pytest.approx((iou_thing / 1.5 + iou_stuff + 0.0) / 3)
    assert q["pq_things"] == pytest.approx(iou_thing / 1.5)


def test_panoptic_quality_needs_iou_above_one_half():
    sem = torch.full((4, 4), 2)
    gt = torch.ones(4, 4, dtype=torch.long)                                  # one thing covering everything
    halves = torch.ones(4, 4, dtype=torch.long)
    halves[:, 2:] = 2                                                        # predicted as two halves: IoU 0.5
    q = panoptic_quality([(sem, halves)], [(sem, gt)], 3, thing_ids=(2,))
    assert q["per_class"][2]["tp"] == 0 and q["per_class"][2]["fp"] == 2 and q["per_class"][2]["fn"] == 1
    assert q["pq"] == 0.0


def test_iou_and_giou_of_identical_disjoint_and_nested_boxes():
    a = torch.tensor([[0.0, 0, 1, 1], [0, 0, 4, 4]])
    b = torch.tensor([[0.0, 0, 1, 1], [2, 0, 3, 1], [1, 1, 3, 3]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 0, 0], [1 / 16, 1 / 16, 4 / 16]]))
    # [0,0,1,1] vs [2,0,3,1]: no overlap, union 2, enclosing box 3 -> 0 - (3 - 2) / 3; nested: C is the outer box
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[1.0, -1 / 3, -(9 - 5) / 9],
                                                                        [1 / 16, 1 / 16, 4 / 16]]))
    torch.testing.assert_close(box_iou(b, a), box_iou(a, b).T)


def test_box_iou_equals_the_iou_of_the_pixels_the_boxes_cover():
    g = torch.Generator().manual_seed(0)
    corners = torch.randint(0, 12, (8, 2, 2), generator=g).sort(1).values   # x1 <= x2, y1 <= y2
    boxes = corners.transpose(1, 2).reshape(8, 4)[:, [0, 2, 1, 3]].float()  # xyxy
    boxes[:, 2:] += 1                                                        # at least one pixel wide
    ys, xs = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    masks = torch.stack([(xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2) for x1, y1, x2, y2 in boxes.long()])
    inter = (masks[:, None] & masks[None]).sum((-2, -1)).float()
    union = (masks[:, None] | masks[None]).sum((-2, -1)).float()
    torch.testing.assert_close(box_iou(boxes, boxes), inter / union)


def test_giou_lies_between_minus_one_and_iou_and_tends_to_minus_one_far_apart():
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(50, 2, generator=g) * 10
    boxes = torch.cat([lo, lo + torch.rand(50, 2, generator=g) * 5], 1)
    giou, iou = generalized_box_iou(boxes, boxes), box_iou(boxes, boxes)
    assert (giou >= -1).all() and (giou <= iou + 1e-6).all() and (giou[iou == 0] <= 0).all()
    far = generalized_box_iou(torch.tensor([[0.0, 0, 0.01, 0.01]]), torch.tensor([[99.99, 99.99, 100, 100]]))
    assert far.item() == pytest.approx(-1, abs=1e-6)


def test_boxes_must_be_xyxy():
    with pytest.raises(ValueError, match="x2 >= x1"):
        box_iou(torch.tensor([[2.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"expected shape \(N, xyxy=4\), got \(1, 3\)"):
        generalized_box_iou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1]]))


def brute_force_min_cost(cost: torch.Tensor) -> float:
    n, m = cost.shape
    if n > m:
        return brute_force_min_cost(cost.T)
    return min(sum(cost[i, j].item() for i, j in enumerate(cols)) for cols in itertools.permutations(range(m), n))


def test_hungarian_match_finds_the_known_optimum():
    cost = torch.tensor([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]])                 # scipy's documented example: 5
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    assert cost[rows, cols].sum().item() == 5 == brute_force_min_cost(cost)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3)])
def test_hungarian_match_of_rectangular_costs_matches_every_row_or_column_once(shape):
    cost = torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows, cols = hungarian_match(cost)
    assert len(rows) == len(cols) == 3 and len(set(rows.tolist())) == len(set(cols.tolist())) == 3
    assert cost[rows, cols].sum().item() == pytest.approx(brute_force_min_cost(cost))
    with pytest.raises(ValueError, match="finite"):
        hungarian_match(torch.tensor([[0.0, float("nan")]]))


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_frechet_distance_of_identical_gaussians_is_zero():
    a = np.random.default_rng(0).normal(size=(6, 6))
    mu, sigma = np.arange(6.0), a @ a.T
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form_in_any_rotated_frame():
    mu1, mu2 = np.array([0.0, 1, 2]), np.array([1.0, 1, 0])
    s1, s2 = np.array([1.0, 4, 9]), np.array([4.0, 1, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()   # 5 + 1 + 1 + 6.25
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    q = random_rotation(3, 1)                                                # full covariances Q S Q^T
    assert frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T) == pytest.approx(expected)
    assert frechet_distance(0.0, 1.0, 1.0, 4.0) == pytest.approx(2.0)       # 1-D: (0-1)^2 + (1-2)^2
    assert frechet_distance([0, 0], np.diag([1.0, 0]), [0, 0], np.diag([4.0, 0])) == pytest.approx(1.0)   # singular


def test_frechet_distance_of_feature_statistics():
    mu, sigma = gaussian_statistics(torch.tensor([[0.0, 0], [2, 2]]))
    assert mu.tolist() == [1, 1] and sigma.tolist() == [[2, 2], [2, 2]]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    fd = frechet_distance(*gaussian_statistics(x), *gaussian_statistics(2 * x + 1))   # N(0, I) vs N(1, 4 I)
    assert fd == pytest.approx(2 * 1 + 2 * (1 - 2) ** 2, rel=0.03)
    with pytest.raises(ValueError, match=r"sigma2: expected shape \(2, 2\), got \(3, 3\)"):
        frechet_distance(mu, sigma, mu, np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_statistics(torch.zeros(1, 3))
    assert math.isfinite(frechet_distance(mu, sigma, mu, sigma))
