r"""Evaluation metrics shared by the papers, each computed as its source defines it.

- `accuracy`: top-1 / top-k accuracy in percent (as `engine.train.evaluate` reports it).
- `expected_calibration_error`, `calibration_bins`: ECE over equal-width confidence bins (Guo et al. 2017).
- `panoptic_quality`: PQ, SQ, RQ of panoptic segmentations (Kirillov et al. 2019).
- `box_iou`, `generalized_box_iou`: pairwise IoU and GIoU of xyxy boxes (Rezatofighi et al. 2019).
- `hungarian_match`: the minimum-cost one-to-one assignment (Kuhn 1955; DETR's matcher, Carion et al. 2020).
- `frechet_distance`, `gaussian_statistics`: the Fréchet distance between two Gaussians, FID's formula
  (Heusel et al. 2017).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from scipy.linalg import LinAlgWarning, sqrtm
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..core.checks import check_shape


def accuracy(logits: Tensor, target: Tensor, k: int = 1, ignore_index: int | None = None) -> float:
    """Percent of rows whose target is among the `k` largest logits. logits (N, C), target (N,) class ids;
    rows whose target is `ignore_index` are not counted. Ties count as hits only if torch.topk picks the target."""
    n, c = check_shape(logits, "N C", name="logits").values()
    check_shape(target, "N", name="target", dtype="int", N=n)
    if not 1 <= k <= c:
        raise ValueError(f"k must be in 1..{c} (the number of classes), got {k}")
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    hit = (logits.topk(k, dim=1).indices == target[:, None]).any(1) & keep
    return 100.0 * hit.sum().item() / max(int(keep.sum()), 1)


def calibration_bins(probs: Tensor, target: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Reliability diagram of Guo et al. (2017, arXiv:1706.04599, Sec. 2): predictions grouped by confidence
    (the largest probability) into bins I_m = ((m - 1)/M, m/M], m = 1..M. probs (N, C) rows on the simplex,
    target (N,). Returns per bin (accuracy, mean confidence, count), each (M,); an empty bin has 0, 0, 0."""
    n, _ = check_shape(probs, "N C", name="probs", dtype="float").values()
    check_shape(target, "N", name="target", dtype="int", N=n)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4):
        raise ValueError("probs: expected rows of probabilities summing to 1 (apply softmax to logits first)")
    confidence, prediction = probs.max(1)
    correct = (prediction == target).to(probs.dtype)
    m = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)        # 0-based: bin (m/M, (m+1)/M]
    count = torch.bincount(m, minlength=n_bins).to(probs.dtype)
    safe = count.clamp_min(1)
    return (torch.bincount(m, correct, n_bins) / safe, torch.bincount(m, confidence, n_bins) / safe, count)


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 15) -> float:
    r"""ECE = \sum_m |B_m| / n \cdot |acc(B_m) - conf(B_m)| (Guo et al. 2017, Eq. 3), in [0, 1], over M equal-width
    confidence bins (see `calibration_bins`). 0 for a calibrated model; 0.3 for one that is 90% sure and 60% right."""
    acc, conf, count = calibration_bins(probs, target, n_bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def _segments(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """One id per (class, instance) pair, -1 for void; ids decode as class = id // 2**20."""
    ids = semantic.astype(np.int64) * 2**20 + instance.astype(np.int64)
    return np.where(semantic < 0, -1, ids)


def _numpy(t) -> np.ndarray:
    return t.cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)


def panoptic_quality(pred: Iterable[tuple], truth: Iterable[tuple], num_classes: int,
                     thing_ids: Sequence[int] = ()) -> dict:
    r"""Panoptic quality (Kirillov et al. 2019, arXiv:1801.00868, Sec. 4) over a dataset.

    A segment is the set of pixels of one (class, instance) pair: one per stuff class present, one per thing.
    Predicted and ground-truth segments of the same class match when their IoU exceeds 0.5 (such a match is
    unique). Per class c, with TP the matches, FP the unmatched predictions and FN the unmatched ground truths:

        PQ_c = \sum_{(p, g) \in TP} IoU(p, g) / (|TP| + |FP| / 2 + |FN| / 2) = SQ_c x RQ_c
        SQ_c = \sum_{TP} IoU / |TP|,    RQ_c = |TP| / (|TP| + |FP| / 2 + |FN| / 2)

    and PQ is the mean of PQ_c over the classes that occur (in predictions or ground truth). Pixels predicted as
    void (class -1) belong to no predicted segment.

    `pred` and `truth` yield (semantic, instance) pairs of (H, W) integer maps. Returns {"pq", "sq", "rq",
    "pq_things", "pq_stuff", "per_class": {c: {"pq", "sq", "rq", "tp", "fp", "fn"}}}; values in [0, 1], means
    over the classes that occur (NaN-free: an absent group gives 0.0).
    """
    tp, fp, fn = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    iou_sum = np.zeros(num_classes)
    for (ps, pi), (gs, gi) in zip(pred, truth, strict=True):
        p, g = _segments(_numpy(ps), _numpy(pi)), _segments(_numpy(gs), _numpy(gi))
        if p.shape != g.shape:
            raise ValueError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
        p_ids, p_area = np.unique(p[p >= 0], return_counts=True)
        g_ids, g_area = np.unique(g, return_counts=True)
        pairs, inter = np.unique(np.stack([p.ravel(), g.ravel()]), axis=1, return_counts=True)
        p_area, g_area = dict(zip(p_ids, p_area)), dict(zip(g_ids, g_area))
        matched_p, matched_g = set(), set()
        for (pid, gid), n in zip(pairs.T, inter):
            if pid < 0 or pid // 2**20 != gid // 2**20:
                continue
            iou = n / (p_area[pid] + g_area[gid] - n)
            if iou > 0.5:                                                     # unique match (Kirillov et al., Thm. 1)
                c = gid // 2**20
                tp[c] += 1
                iou_sum[c] += iou
                matched_p.add(pid)
                matched_g.add(gid)
        for pid in p_area:
            if pid not in matched_p:
                fp[pid // 2**20] += 1
        for gid in g_area:
            if gid not in matched_g:
                fn[gid // 2**20] += 1
    per_class, present = {}, []
    for c in range(num_classes):
        denom = tp[c] + 0.5 * fp[c] + 0.5 * fn[c]
        if denom == 0:
            continue
        present.append(c)
        sq = iou_sum[c] / tp[c] if tp[c] else 0.0
        rq = tp[c] / denom
        per_class[c] = {"pq": sq * rq, "sq": sq, "rq": rq, "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c])}

    def mean(key: str, classes: list[int]) -> float:
        return float(np.mean([per_class[c][key] for c in classes])) if classes else 0.0

    things = [c for c in present if c in set(thing_ids)]
    stuff = [c for c in present if c not in set(thing_ids)]
    return {"pq": mean("pq", present), "sq": mean("sq", present), "rq": mean("rq", present),
            "pq_things": mean("pq", things), "pq_stuff": mean("pq", stuff), "per_class": per_class}


def _check_boxes(boxes: Tensor, name: str) -> None:
    check_shape(boxes, "N xyxy", name=name, dtype="float", xyxy=4)
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError(f"{name}: expected xyxy boxes with x2 >= x1 and y2 >= y1")


def _area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _divide(a: Tensor, b: Tensor) -> Tensor:
    """a / b, and 0 where b is 0 (boxes of zero area)."""
    return torch.where(b > 0, a / b.where(b > 0, torch.ones_like(b)), torch.zeros_like(a))


def _iou_and_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    _check_boxes(a, "boxes a")
    _check_boxes(b, "boxes b")
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])                          # (N, M, 2) intersection corners
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)                                     # (N, M)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return _divide(inter, union), union


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union of boxes a (N, 4) and b (M, 4), xyxy: (N, M) in [0, 1]."""
    return _iou_and_union(a, b)[0]


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU (Rezatofighi et al. 2019, arXiv:1902.09630, Alg. 1) of xyxy boxes a (N, 4), b (M, 4):
    IoU - |C \\ (A u B)| / |C| with C the smallest box enclosing A and B; (N, M) in [-1, 1], tending to -1 for
    small boxes far apart, where IoU is 0 whatever their distance."""
    iou, union = _iou_and_union(a, b)
    lo = torch.minimum(a[:, None, :2], b[None, :, :2])                          # (N, M, 2) enclosing box C
    hi = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    enclosing = (hi - lo).prod(-1)
    return iou - _divide(enclosing - union, enclosing)


def hungarian_match(cost: Tensor) -> tuple[Tensor, Tensor]:
    """The one-to-one assignment of rows to columns with the least total cost (the Hungarian method, Kuhn 1955,
    via scipy's linear_sum_assignment), as DETR matches predictions to targets (Carion et al. 2020, Eq. 1).
    cost (N, M); returns (rows, cols), min(N, M) long indices each, rows ascending."""
    check_shape(cost, "N M", name="cost")
    if not torch.isfinite(cost).all():
        raise ValueError("cost: expected finite entries (no NaN or inf)")
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def gaussian_statistics(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), N >= 2, in float64: the statistics FID compares."""
    n, _ = check_shape(features, "N D", name="features").values()
    if n < 2:
        raise ValueError(f"features: need N >= 2 rows for a covariance, got {n}")
    x = features.detach().cpu().double().numpy()
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    r"""Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982), the formula of FID
    (Heusel et al. 2017, arXiv:1706.08500, Sec. 3):

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})

    For diagonal covariances it is ||mu1 - mu2||^2 + ||sqrt(diag sigma1) - sqrt(diag sigma2)||^2. When the product
    is singular, eps is added to both diagonals (as the authors' code does); the tiny imaginary part that sqrtm
    can return is dropped."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, shape in (("mu1", mu1.shape), ("mu2", mu2.shape), ("sigma1", sigma1.shape), ("sigma2", sigma2.shape)):
        if shape != ((d,) if name.startswith("mu") else (d, d)):
            raise ValueError(f"{name}: expected shape {(d,) if name.startswith('mu') else (d, d)}, got {shape}")
    with warnings.catch_warnings():                          # singular products are common (N < D features)
        warnings.simplefilter("ignore", LinAlgWarning)
        covmean = sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = eps * np.eye(d)
            covmean = sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(covmean.imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 sigma2) has imaginary part {np.abs(covmean.imag).max():.3g}: are "
                             "both covariances symmetric positive semi-definite?")
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
