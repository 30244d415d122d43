r"""Panoptic quality (Kirillov et al. 2019, arXiv:1801.00868, Sec. 4), the metric of Axial-DeepLab's Sec. 4.2-4.4.

A segment is the set of pixels of one (class, instance) pair: one per stuff class present, one per thing. Predicted
and ground-truth segments of the same class match when their IoU exceeds 0.5 (such a match is unique). Over a whole
dataset, per class c, with TP the matches, FP the unmatched predictions and FN the unmatched ground truths:

    PQ_c = \sum_{(p, g) \in TP} IoU(p, g) / (|TP| + |FP| / 2 + |FN| / 2) = SQ_c x RQ_c
    SQ_c = \sum_{TP} IoU / |TP|,    RQ_c = |TP| / (|TP| + |FP| / 2 + |FN| / 2)

and PQ is the mean of PQ_c over the classes that occur (in predictions or ground truth). Pixels predicted as void
(class -1) belong to no predicted segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch


def _segments(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """One id per (class, instance) pair, -1 for void; ids decode as class = id // 2**20."""
    ids = semantic.astype(np.int64) * 2**20 + instance.astype(np.int64)
    return np.where(semantic < 0, -1, ids)


def panoptic_quality(pred: Iterable[tuple], truth: Iterable[tuple], num_classes: int,
                     thing_ids: Sequence[int] = ()) -> dict:
    """PQ, SQ, RQ over a dataset: `pred` and `truth` yield (semantic, instance) pairs of (H, W) integer maps.

    Returns {"pq", "sq", "rq", "pq_things", "pq_stuff", "per_class": {c: {"pq", "sq", "rq", "tp", "fp", "fn"}}};
    PQ values in [0, 1], means over the classes that occur (NaN-free: an absent group gives 0.0).
    """
    tp, fp, fn = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    iou_sum = np.zeros(num_classes)
    for (ps, pi), (gs, gi) in zip(pred, truth, strict=True):
        p = _segments(*(t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (ps, pi)))
        g = _segments(*(t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (gs, gi)))
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
