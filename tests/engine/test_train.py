import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from archzoo.engine.train import StepSampler, evaluate, fit_and_eval, lr_factor, train


def blobs(n=64, seed=0):
    """Three linearly separable classes in 8 dimensions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 8, generator=g) * 0.3
    x[torch.arange(n), y] += 2.0
    return TensorDataset(x, y)


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def test_loss_falls_on_a_fixed_batch():
    data = blobs(16)
    result = train(mlp(), data, steps=60, batch_size=16, lr=1e-2, schedule="constant", progress=False)
    assert len(result.history) == 60 and result.steps == 60
    assert result.final_loss < 0.1 * result.history[0]["loss"]


def test_same_seed_gives_identical_weights_on_cpu():
    a, b = mlp(dropout=0.2), mlp(dropout=0.2)
    for model in (a, b):
        train(model, blobs(), steps=8, batch_size=8, seed=3, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_batch_at_a_step_is_a_function_of_seed_and_step_and_each_epoch_is_a_permutation():
    walked = StepSampler(10, 4, seed=5)
    steps = [walked.indices(t) for t in range(10)]             # 40 positions = 4 epochs of 10
    assert torch.equal(StepSampler(10, 4, seed=5).indices(7), steps[7])
    stream = torch.cat(steps)
    for epoch in range(4):
        assert sorted(stream[10 * epoch:10 * (epoch + 1)].tolist()) == list(range(10))
    assert not torch.equal(StepSampler(10, 4, seed=6).indices(0), steps[0])


def test_batch_larger_than_the_dataset_cycles_through_epochs():
    counts = torch.bincount(StepSampler(3, 7, seed=0).indices(0), minlength=3)    # two epochs and one sample
    assert sorted(counts.tolist()) == [2, 2, 3]


def test_schedule_values_at_known_steps():
    kw = dict(steps=110, warmup_steps=10)
    assert lr_factor(0, **kw) == pytest.approx(0.1)             # (0 + 1) / 10
    assert lr_factor(9, **kw) == pytest.approx(1.0)
    assert lr_factor(10, **kw) == pytest.approx(1.0)            # cosine starts at its top
    assert lr_factor(60, **kw) == pytest.approx(0.5)            # halfway: (1 + cos(pi/2)) / 2
    assert lr_factor(35, **kw) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor(60, **kw, schedule="linear") == pytest.approx(0.5)
    assert lr_factor(60, **kw, schedule="constant") == 1.0
    assert lr_factor(60, **kw, min_ratio=0.2) == pytest.approx(0.2 + 0.8 * 0.5)


def test_history_records_the_scheduled_learning_rate():
    result = train(mlp(), blobs(), steps=20, batch_size=8, lr=0.5, warmup_steps=4, optimizer="sgd", progress=False)
    expected = [0.5 * lr_factor(t, steps=20, warmup_steps=4) for t in range(20)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def test_grad_clipping_caps_the_norm_of_the_update():
    model = mlp()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])

    def huge(model, batch):
        return 1e3 * sum((p ** 2).sum() for p in model.parameters())

    result = train(model, blobs(), steps=1, batch_size=8, loss_fn=huge, lr=1.0, optimizer="sgd", momentum=0.0,
                   schedule="constant", grad_clip=0.5, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert result.history[0]["grad_norm"] > 0.5
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.5, rel=1e-4)   # lr * clipped grad


@pytest.mark.parametrize("kw, received", [(dict(steps=0), "0"), (dict(batch_size=0), "0"),
                                          (dict(optimizer="lamb"), "lamb"), (dict(schedule="step"), "step"),
                                          (dict(amp="fp8"), "fp8")])
def test_bad_arguments_raise_value_error_naming_the_value(kw, received):
    args = dict(steps=2, batch_size=4, progress=False) | kw
    with pytest.raises(ValueError, match=received):
        train(mlp(), blobs(), **args)


def test_a_loss_that_turns_nan_stops_training_at_its_step_before_the_update():
    calls = []

    def blows_up(model, batch):
        calls.append(1)
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * float("nan") if len(calls) == 3 else loss

    model = mlp()
    with pytest.raises(FloatingPointError, match="step 3"):
        train(model, blobs(), steps=10, batch_size=8, loss_fn=blows_up, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())        # stopped before the update


def test_loss_fn_metrics_go_to_history_and_the_json_log(tmp_path):
    def with_metrics(model, batch):
        x, y = batch
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}

    log = tmp_path / "log.jsonl"
    result = train(mlp(), blobs(), steps=5, batch_size=8, loss_fn=with_metrics, log_path=log, progress=False)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]
    assert {"loss", "lr", "acc", "samples_per_s"} <= set(lines[0])
    assert lines[-1]["loss"] == result.final_loss and 0.0 <= result.history[0]["acc"] <= 1.0


class Fixed(nn.Module):
    """Returns its input as the logits: the prediction is argmax(x)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def test_evaluate_counts_accuracy_in_percent_and_restores_train_mode():
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1, 1, 1])                                # three of four argmax predictions are right
    model = Fixed().train()
    metrics = evaluate(model, TensorDataset(x, y), batch_size=3)
    expected_loss = nn.functional.cross_entropy(x, y).item()
    assert metrics["accuracy"] == 75.0 and metrics["error"] == 25.0
    assert metrics["loss"] == pytest.approx(expected_loss)
    assert model.training


def test_evaluate_per_token_skips_ignored_targets():
    x = torch.tensor([[[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]]])      # (B=1, N=3, V=2)
    y = torch.tensor([[0, 0, -100]])                              # right, wrong, ignored
    assert evaluate(Fixed(), TensorDataset(x, y))["accuracy"] == 50.0


def test_fit_and_eval_learns_separable_blobs():
    data = SimpleNamespace(train=blobs(96, seed=0), test=blobs(48, seed=1))
    fit = fit_and_eval(mlp(), data, steps=80, batch_size=16, lr=1e-2, progress=False)
    assert fit.error < 10.0 and fit.train_error < 10.0
    assert fit.accuracy == pytest.approx(100.0 - fit.error) and len(fit.history) == 80
    no_train = fit_and_eval(mlp(), data, steps=2, batch_size=16, eval_train=False, progress=False)
    assert no_train.train_error is None and no_train.train_loss is None
