"""Generated shape scenes for panoptic segmentation and detection: stuff (sky, ground) and things (circles,
squares, triangles).

Each scene is a (1, H, W) grey image: a sky region above a random horizon and a ground region below it, in two
intensity ranges, and 1 ... `max_objects` non-overlapping shapes (they may touch) of random size and one shared
intensity range, so a shape's class is told by its outline, not its brightness; Gaussian noise on top. Labels:
`semantic` (H, W) class ids (0 sky, 1 ground, 2 circle, 3 square, 4 triangle) and `instance` (H, W) ids (0 on
stuff, 1 ... k on the k things of the scene), the two maps a panoptic segmentation predicts; and for detection,
per scene, the k things' boxes (xyxy pixel edges, the tight box of each instance mask) and class ids.

    scenes = make_scenes(100, seed=0)
    scenes.images[i], scenes.semantic[i], scenes.instance[i]    # (1, H, W), (H, W), (H, W)
    scenes.boxes[i], scenes.labels[i]                           # (k, 4) float32, (k,) int64 in THING_IDS
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_shape
from .registry import register_dataset

STUFF_CLASSES = ("sky", "ground")
THING_CLASSES = ("circle", "square", "triangle")
CLASSES = STUFF_CLASSES + THING_CLASSES
THING_IDS = tuple(range(len(STUFF_CLASSES), len(CLASSES)))


@dataclass
class ShapeScenes:
    images: Tensor          # (N, 1, H, W) float32 in [0, 1]
    semantic: Tensor        # (N, H, W) int64 class ids
    instance: Tensor        # (N, H, W) int64, 0 on stuff, 1..k on things
    boxes: list[Tensor]     # N x (k, 4) float32 xyxy, row j - 1 the box of instance j
    labels: list[Tensor]    # N x (k,) int64 class ids of the instances, in THING_IDS

    def __len__(self) -> int:
        return len(self.images)


def instance_boxes(semantic: Tensor, instance: Tensor) -> tuple[Tensor, Tensor]:
    """Tight xyxy boxes and class ids of the instances 1..k of one (H, W) panoptic map: (k, 4) float32, (k,) int64.

    Boxes are in pixel edges: an instance covering columns x1..x2 - 1 and rows y1..y2 - 1 has box (x1, y1, x2, y2),
    so a box's area counts the pixels it covers. Instance ids must run 1..k without gaps; the class of an instance
    is the semantic class of its pixels (the most frequent one, should they disagree).
    """
    check_shape(semantic, "H W", name="semantic")
    check_shape(instance, "H W", name="instance", H=semantic.shape[0], W=semantic.shape[1])
    k = int(instance.max()) if instance.numel() else 0
    ids = instance.unique()
    if not torch.equal(ids[ids > 0], torch.arange(1, k + 1)):
        raise ValueError(f"instance ids must run 1..k without gaps, got {ids[ids > 0].tolist()}")
    boxes, labels = torch.zeros(k, 4), torch.zeros(k, dtype=torch.long)
    for j in range(1, k + 1):
        ys, xs = torch.nonzero(instance == j, as_tuple=True)
        boxes[j - 1] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        labels[j - 1] = semantic[ys, xs].mode().values
    return boxes, labels


def shape_mask(kind: str, cy: float, cx: float, r: float, size: int) -> np.ndarray:
    """(size, size) bool mask of a circle (radius r), a square (half side 0.85 r) or an upright triangle (height
    and base 2 r) centred at (cy, cx)."""
    y, x = np.mgrid[:size, :size].astype(float)
    if kind == "circle":
        return (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    if kind == "square":
        return (np.abs(y - cy) <= 0.85 * r) & (np.abs(x - cx) <= 0.85 * r)
    if kind == "triangle":
        top = cy - r
        return (y >= top) & (y <= cy + r) & (np.abs(x - cx) <= (y - top) / 2)
    raise ValueError(f"kind must be one of {THING_CLASSES}, got {kind!r}")


def make_scenes(n: int, size: int = 32, max_objects: int = 4, radius: tuple[float, float] = (3.0, 6.0),
                noise: float = 0.05, seed: int = 0) -> ShapeScenes:
    """`n` seeded scenes of `size` x `size` (see the module docstring)."""
    if n < 1 or size < 8 or max_objects < 1:
        raise ValueError(f"need n >= 1, size >= 8, max_objects >= 1; got {n}, {size}, {max_objects}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.float32)
    semantic = np.zeros((n, size, size), np.int64)
    instance = np.zeros((n, size, size), np.int64)
    rows = np.arange(size)[:, None]
    for i in range(n):
        horizon = rng.integers(size // 3, 2 * size // 3 + 1)
        ground = np.broadcast_to(rows >= horizon, (size, size))
        semantic[i] = ground.astype(np.int64)                               # 0 sky, 1 ground
        images[i] = np.where(ground, rng.uniform(0.45, 0.6), rng.uniform(0.1, 0.3))
        occupied = np.zeros((size, size), bool)
        k = 0
        for _ in range(rng.integers(1, max_objects + 1)):
            for _attempt in range(20):                                        # place without overlap
                r = rng.uniform(*radius)
                cy, cx = rng.uniform(r, size - 1 - r, size=2)
                cls = rng.integers(len(THING_CLASSES))
                mask = shape_mask(THING_CLASSES[cls], cy, cx, r, size)
                if mask.sum() >= 9 and not (mask & occupied).any():
                    k += 1
                    occupied |= mask
                    semantic[i][mask] = THING_IDS[cls]
                    instance[i][mask] = k
                    images[i][mask] = rng.uniform(0.75, 1.0)
                    break
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    semantic, instance = torch.from_numpy(semantic), torch.from_numpy(instance)
    boxes, labels = zip(*map(instance_boxes, semantic, instance))
    return ShapeScenes(torch.from_numpy(images.clip(0, 1))[:, None], semantic, instance, list(boxes), list(labels))


@dataclass
class SceneData:
    """Train and test shape scenes, as `load_dataset("shape_scenes")` returns them."""

    name: str
    train: ShapeScenes
    test: ShapeScenes
    classes: tuple[str, ...] = CLASSES
    thing_ids: tuple[int, ...] = THING_IDS


def load_scenes(n_train: int = 512, n_test: int = 128, size: int = 32, max_objects: int = 4,
                seed: int = 0) -> SceneData:
    """`n_train` and `n_test` scenes of `size` x `size` from two independent seeds (never the same scenes)."""
    train_seed, test_seed = np.random.SeedSequence(seed).generate_state(2)
    return SceneData("shape_scenes", make_scenes(n_train, size, max_objects, seed=int(train_seed)),
                     make_scenes(n_test, size, max_objects, seed=int(test_seed)))


register_dataset("shape_scenes", load_scenes, kind="scenes",
                 description="generated panoptic scenes: sky/ground stuff, circle/square/triangle things, boxes")
