"""The loops moved onto the Trainer give the numbers of the loops they replace.

`reference_loop` is the engine's training loop as it was before the Trainer (and BiT's own `fine_tune`
loop, which differed only in setting the learning rate by hand), copied here as the reference.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from archzoo.engine.runtime import seed_everything
from archzoo.engine.schedules import lr_factor
from archzoo.engine.streams import StepSampler, gather
from archzoo.engine.train import evaluate, train


def reference_loop(model, dataset, *, steps, batch_size, loss_fn, optimizer, lr_at, seed, grad_clip=None):
    """Seed; then at each step set the step's learning rate, take the sampler's batch, zero the gradients,
    compute the loss, stop on a non-finite one, backpropagate, clip, update."""
    seed_everything(seed)
    sampler = StepSampler(len(dataset), batch_size, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    history = []
    for t in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(t)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, gather(dataset, sampler.indices(t)))
        if not math.isfinite(value := float(loss.detach())):
            raise FloatingPointError(f"loss is {value} at step {t + 1}")
        loss.backward()
        entry = {"step": t + 1, "loss": value, "lr": lr_at(t)}
        if grad_clip is not None:
            entry["grad_norm"] = float(nn.utils.clip_grad_norm_(params, grad_clip))
        optimizer.step()
        history.append(entry)
    return history


def points(n=48, seed=0):
    """Random points with random labels among three classes."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def cross_entropy(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_train_gives_the_losses_and_weights_of_the_loop_before_the_trainer():
    kw = dict(steps=12, warmup_steps=3, schedule="cosine", min_ratio=0.1)
    ours, reference = mlp(), mlp()
    result = train(ours, points(), batch_size=8, lr=1e-2, weight_decay=0.01, grad_clip=0.5, seed=3, min_lr=1e-3,
                   progress=False, steps=kw["steps"], warmup_steps=kw["warmup_steps"])
    expected = reference_loop(reference, points(), batch_size=8, loss_fn=cross_entropy, seed=3, grad_clip=0.5,
                              optimizer=torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.01),
                              lr_at=lambda t: 1e-2 * lr_factor(t, **kw), steps=kw["steps"])
    assert result.history == expected
    assert same_weights(ours, reference)


def test_bit_fine_tune_gives_the_losses_of_its_own_loop_before_the_trainer():
    from archzoo.papers.bit.transfer import HyperRule, fine_tune, mixup_cross_entropy, preprocess_train

    x, y = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    rule = HyperRule(steps=10, resize=10, crop=8, mixup_alpha=0.1, lr=0.1, batch_size=4, flip=True)

    def model():
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 36, 3))

    ours, reference = model(), model()
    history = fine_tune(ours, TensorDataset(x, y), rule, seed=2)
    expected = reference_loop(
        reference, TensorDataset(x, y), steps=rule.steps, batch_size=rule.batch_size, seed=2,
        loss_fn=lambda m, b: mixup_cross_entropy(m, preprocess_train(b[0], rule), b[1], rule.mixup_alpha),
        optimizer=torch.optim.SGD(reference.parameters(), lr=rule.lr, momentum=rule.momentum), lr_at=rule.lr_at)
    assert history == expected
    assert same_weights(ours, reference)


@pytest.mark.parametrize("lr", [0.05, 1e30])                    # the second diverges
def test_batch_norm_monitoring_measures_what_its_measuring_loss_fn_measured(lr):
    from archzoo.papers.batch_norm.claims import train_monitored

    data = SimpleNamespace(train=points(48), test=points(30, seed=1))
    cfg = SimpleNamespace(steps=9, batch_size=8, eval_every=4)
    looks, accuracy, seen = [], [], []

    def look(model):
        return float(model[1].running_mean.sum())

    def measuring(net, batch):                                  # the claim's old loss_fn: a look before each update
        if len(seen) % cfg.eval_every == 0:
            accuracy.append((len(seen), evaluate(net, data.test)["accuracy"]))
            looks.append(look(net))
        seen.append(1)
        return cross_entropy(net, batch)

    reference = mlp()
    try:
        reference_loop(reference, data.train, steps=cfg.steps, batch_size=cfg.batch_size, loss_fn=measuring,
                       optimizer=torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9), lr_at=lambda t: lr,
                       seed=4)
        accuracy.append((cfg.steps, evaluate(reference, data.test)["accuracy"]))       # its finish(model)
        looks.append(look(reference))
        diverged = False
    except FloatingPointError:
        diverged = True
    run = train_monitored(SimpleNamespace(device=torch.device("cpu"), progress=False), mlp(), data, cfg, lr, 4,
                          desc="", look=look)
    assert run["diverged"] == diverged == (lr > 1)
    assert list(zip(run["step"], run["accuracy"])) == accuracy and run["looks"] == looks


def test_axial_deeplab_panoptic_training_gives_the_losses_of_the_loop_before_the_trainer():
    from archzoo.papers.axial_deeplab.claims import scene_dataset
    from archzoo.papers.axial_deeplab.panoptic import AxialDeepLab, panoptic_loss

    data, _ = scene_dataset(8, 32, seed=1000, sigma=2.0)

    def loss_fn(model, batch):
        x, semantic, heatmap, offset, instance = batch
        return panoptic_loss(model(x), semantic, heatmap, offset, instance)

    def model():
        torch.manual_seed(0)
        return AxialDeepLab(5, 1, 32)

    ours, reference = model(), model()
    result = train(ours, data, steps=2, batch_size=4, loss_fn=loss_fn, lr=2e-3, weight_decay=1e-4, warmup_steps=1,
                   seed=0, progress=False)
    expected = reference_loop(reference, data, steps=2, batch_size=4, loss_fn=loss_fn, seed=0,
                              optimizer=torch.optim.AdamW(reference.parameters(), lr=2e-3, weight_decay=1e-4),
                              lr_at=lambda t: 2e-3 * lr_factor(t, steps=2, warmup_steps=1))
    assert result.history == expected
    assert same_weights(ours, reference)
