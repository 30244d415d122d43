"""Generated shape scenes: seeded, labels that agree with each other, boxes that enclose their masks tightly."""

import pytest
import torch

from archzoo.data.scenes import THING_IDS, instance_boxes, make_scenes, shape_mask
from archzoo.engine.metrics import box_iou


def test_scenes_are_seeded_and_their_labels_agree():
    a, b = make_scenes(6, seed=1), make_scenes(6, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.instance, b.instance)
    is_thing = torch.isin(a.semantic, torch.tensor(THING_IDS))
    assert torch.equal(is_thing, a.instance > 0)
    for i in range(6):
        for k in a.instance[i].unique().tolist():
            if k:
                assert a.semantic[i][a.instance[i] == k].unique().numel() == 1   # one class per instance
    assert not torch.equal(a.images, make_scenes(6, seed=2).images)


def test_boxes_enclose_their_masks_tightly():
    scenes = make_scenes(8, size=24, seed=4)
    for semantic, instance, boxes, labels in zip(scenes.semantic, scenes.instance, scenes.boxes, scenes.labels):
        assert boxes.shape == (int(instance.max()), 4) and boxes.dtype == torch.float32
        for j, ((x1, y1, x2, y2), label) in enumerate(zip(boxes.long().tolist(), labels.tolist()), start=1):
            mask = instance == j
            inside = torch.zeros_like(mask)
            inside[y1:y2, x1:x2] = True
            assert not (mask & ~inside).any()                                  # encloses the mask
            assert mask[y1].any() and mask[y2 - 1].any() and mask[:, x1].any() and mask[:, x2 - 1].any()   # tight
            assert label in THING_IDS and (semantic[mask] == label).all()
        off_diagonal = box_iou(boxes, boxes) - torch.eye(len(boxes))
        assert (off_diagonal < 1).all()                                         # distinct shapes, distinct boxes


def test_boxes_are_deterministic_under_a_seed():
    a, b, c = make_scenes(5, seed=7), make_scenes(5, seed=7), make_scenes(5, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.boxes + a.labels, b.boxes + b.labels))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a.boxes, c.boxes))


def test_instance_boxes_of_a_known_square():
    semantic = torch.zeros(10, 10, dtype=torch.long)
    instance = torch.zeros(10, 10, dtype=torch.long)
    square = torch.from_numpy(shape_mask("square", 4.0, 6.0, 2.0, 10))       # half side 1.7: rows 3-5, cols 5-7
    semantic[square], instance[square] = THING_IDS[1], 1
    boxes, labels = instance_boxes(semantic, instance)
    assert boxes.tolist() == [[5, 3, 8, 6]] and labels.tolist() == [THING_IDS[1]]
    assert instance_boxes(semantic, torch.zeros_like(instance))[0].shape == (0, 4)
    with pytest.raises(ValueError, match="without gaps"):
        instance_boxes(semantic, instance * 2)


def test_shape_scenes_load_by_name_with_disjoint_train_and_test():
    from archzoo.data import list_datasets, load_dataset

    assert "shape_scenes" in list_datasets()
    data = load_dataset("shape_scenes", n_train=8, n_test=4, size=24, seed=3)
    assert (len(data.train), len(data.test)) == (8, 4) and data.train.images.shape[-2:] == (24, 24)
    assert not torch.equal(data.train.images[:4], data.test.images)
    torch.testing.assert_close(data.test.images, load_dataset("shape_scenes", n_train=8, n_test=4, size=24,
                                                                seed=3).test.images)
