"""Supermasks in Superposition (Wortsman et al. 2020, arXiv:2006.14769): the edge-popup top-k mask and its exact
straight-through gradient, the signed-constant weights that never train, the superposition of Eq. 3 and its
one-hot special case, one-shot task inference by the entropy gradient (Eq. 5) on a constructed case, the
permuted-task generator, the FC 1024-1024 preset's counts and the claims' quick runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import archzoo
from archzoo.data import ImageData
from archzoo.engine.train import train
from archzoo.papers.supsup import (
    PermutedTasks,
    SupermaskConv2d,
    SupermaskLinear,
    SupSupMLP,
    entropy_gradient,
    infer_task,
    set_task,
    supermask_,
    superpose,
    task_scores,
    top_k_mask,
)
from archzoo.papers.supsup.permuted import permute_pixels


def tiny(num_tasks=3, sparsity=0.5, dtype=torch.float64) -> SupSupMLP:
    torch.manual_seed(0)
    return SupSupMLP(num_classes=5, img_size=4, hidden=(12, 8), num_tasks=num_tasks, sparsity=sparsity).to(dtype)


# ----------------------------------------------------------------------------- the mask and its gradient


@pytest.mark.parametrize("k", [0.1, 0.5, 0.73, 1.0])
def test_the_mask_keeps_exactly_the_top_k_fraction_of_scores_by_magnitude(k):
    scores = torch.randn(37, 23, dtype=torch.float64)
    mask = top_k_mask(scores, k)
    kept, dropped = scores.abs()[mask == 1], scores.abs()[mask == 0]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert int(mask.sum()) == round(k * scores.numel())
    assert dropped.numel() == 0 or kept.min() > dropped.max()


def test_the_straight_through_gradient_is_exactly_the_mask_gradient_times_the_sign_of_the_scores():
    torch.manual_seed(0)
    layer = SupermaskLinear(7, 5, num_tasks=2, sparsity=0.4).double()
    x, target = torch.randn(9, 7, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)
    F.mse_loss(layer(x), target).backward()
    # reference: the same loss as a function of a leaf mask M, dL/dS = dL/dM * d|S|/dS
    mask = top_k_mask(layer.scores[0].detach(), 0.4).requires_grad_()
    (grad_mask,) = torch.autograd.grad(F.mse_loss(F.linear(x, layer.weight * mask), target), mask)
    torch.testing.assert_close(layer.scores[0].grad, grad_mask * layer.scores[0].detach().sign(), rtol=0, atol=1e-15)
    assert layer.scores[1].grad is None                     # another task's scores get nothing


def test_the_weights_are_signed_kaiming_constants():
    torch.manual_seed(0)
    for layer, fan_in in ((SupermaskLinear(50, 40), 50), (SupermaskConv2d(6, 8, 3, groups=2), 3 * 3 * 3)):
        w = layer.weight
        torch.testing.assert_close(w.abs(), torch.full_like(w, math.sqrt(2 / fan_in)))
        assert 0.4 < (w > 0).float().mean() < 0.6           # fair signs


def test_training_a_task_changes_only_its_scores_never_the_weights_and_the_loss_falls():
    torch.manual_seed(0)
    model = SupSupMLP(num_classes=5, img_size=4, hidden=(64, 64), num_tasks=3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 4, 4, generator=g) - 0.5
    data = TensorDataset(x, (x.flatten(1) @ torch.randn(16, 5, generator=g)).argmax(1))    # a linear teacher
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_task(model, 1)
    result = train(model, data, steps=60, batch_size=64, optimizer=lambda m: torch.optim.Adam(task_scores(m, 1), 0.05),
                   schedule="constant", progress=False)
    after = model.state_dict()
    for key, value in before.items():
        moved = not torch.equal(value, after[key])
        assert moved == (key.endswith("scores.1")), key     # weights and other tasks' scores never change
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


# ----------------------------------------------------------------------------- superposition and task inference


@pytest.mark.parametrize("task", [0, 2])
def test_superposition_with_a_one_hot_alpha_is_that_tasks_masked_network(task):
    model, x = tiny().eval(), torch.rand(6, 1, 4, 4, dtype=torch.float64)
    expected = set_task(model, task)(x)
    superpose(model, F.one_hot(torch.tensor(task), 3).double())
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    superpose(model, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert not torch.allclose(model(x), expected)           # the uniform mix is another network


def test_superposition_is_linear_in_alpha_layer_by_layer():
    layer, x = SupermaskLinear(6, 4, num_tasks=3).double(), torch.randn(5, 6, dtype=torch.float64)
    alphas = torch.tensor([0.2, -0.5, 1.3], dtype=torch.float64)
    layer.superpose(alphas)
    expected = sum(a * F.linear(x, layer.weight * layer.mask(i)) for i, a in enumerate(alphas))   # Eq. 3
    torch.testing.assert_close(layer(x), expected)


def constructed_model(num_tasks: int = 3, block: int = 4) -> nn.Module:
    """One supermask layer over positive weights: task j's mask keeps the weights from input block j to class 0,
    so its inputs (non-zero only on block j) get a confident class 0 through mask j and uniform outputs
    through every other mask."""
    model = supermask_(nn.Sequential(nn.Linear(num_tasks * block, num_tasks)), num_tasks,
                       sparsity=block / (num_tasks * block * num_tasks)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        for j, scores in enumerate(model[0].scores):
            scores.fill_(0.01).view(num_tasks, num_tasks, block)[0, j] = 1.0
    return model


@pytest.mark.parametrize("task", [0, 1, 2])
def test_the_entropy_gradient_infers_the_task_of_a_batch(task):
    model = constructed_model()
    x = torch.zeros(8, 3, 4, dtype=torch.float64)
    x[:, task] = torch.rand(8, 4, dtype=torch.float64) + 1.0                   # a batch of task `task`
    grad = entropy_gradient(model, x.flatten(1))
    assert infer_task(model, x.flatten(1)) == task and grad[task] < 0
    assert model[0].alphas is None                                                 # inference leaves no superposition


def test_the_entropy_gradient_equals_finite_differences_of_the_entropy():
    model, x = tiny().eval(), torch.rand(6, 1, 4, 4, dtype=torch.float64)

    def entropy(alphas):
        superpose(model, alphas)
        p = model(x).softmax(-1)
        return float(-(p * p.log()).sum(-1).mean())

    grad, eps = entropy_gradient(model, x), 1e-6
    for i in range(3):
        step = torch.full((3,), 1 / 3, dtype=torch.float64)
        up, down = step.clone(), step.clone()
        up[i] += eps
        down[i] -= eps
        assert grad[i].item() == pytest.approx((entropy(up) - entropy(down)) / (2 * eps), rel=1e-6, abs=1e-10)


# ----------------------------------------------------------------------------- supermask_ on any network


def test_supermask_turns_any_network_into_masked_fixed_weights_with_only_scores_trainable():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 5 * 5, 3))
    supermask_(net, num_tasks=2, sparsity=0.3)
    assert isinstance(net[0], SupermaskConv2d) and isinstance(net[4], SupermaskLinear)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["0.scores.0", "0.scores.1", "4.scores.0", "4.scores.1"]
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(net[0](x), F.conv2d(x, net[0].weight * net[0].mask(0), padding=1))
    assert net.eval()(x).shape == (2, 3)


def test_bad_task_alphas_and_sparsity_are_value_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r"task must be in 0..2, got 3"):
        set_task(model, 3)
    with pytest.raises(ValueError, match=r"alphas: expected shape \(3,\), got \(2,\)"):
        superpose(model, torch.ones(2))
    with pytest.raises(ValueError, match="sparsity"):
        SupermaskLinear(3, 3, sparsity=0.0)
    with pytest.raises(ValueError, match="no supermask layers"):
        set_task(nn.Linear(2, 2), 0)
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        supermask_(nn.Linear(2, 2), num_tasks=2)


# ----------------------------------------------------------------------------- preset and permuted tasks


def test_fc1024_has_the_authors_widths_and_counts():
    with torch.device("meta"):
        model = archzoo.create_model("supsup_fc1024", num_tasks=4)
    weights = 784 * 1024 + 1024 * 1024 + 1024 * 10                             # FC1024 of the authors' code
    assert weights == 1_861_632
    assert sum(b.numel() for b in model.buffers()) == weights                   # fixed, shared by all tasks
    assert sum(p.numel() for p in model.parameters()) == 4 * weights            # one score per weight and task
    assert [tuple(layer.weight.shape) for layer in (*model.hidden, model.head)] == [(1024, 784), (1024, 1024),
                                                                                    (10, 1024)]


def small_images(n=20, side=4) -> ImageData:
    g = torch.Generator().manual_seed(0)
    train_set = TensorDataset(torch.rand(n, 1, side, side, generator=g), torch.arange(n) % 3)
    test_set = TensorDataset(torch.rand(n // 2, 1, side, side, generator=g), torch.arange(n // 2) % 3)
    return ImageData("tiny", train_set, test_set, 3, ["a", "b", "c"], 1, side)


def test_permuted_tasks_shuffle_pixels_by_one_seeded_permutation_per_task_and_keep_labels():
    data = small_images()
    tasks = PermutedTasks(data, 3, seed=5)
    t1 = tasks.task(1)
    x, xp = data.train.tensors[0].flatten(1), t1.train.tensors[0].flatten(1)
    perm = tasks.permutations[1]
    torch.testing.assert_close(xp, x[:, perm])                                  # one permutation for every image
    assert torch.equal(t1.train.tensors[1], data.train.tensors[1]) and sorted(perm.tolist()) == list(range(16))
    assert not torch.equal(tasks.permutations[0], tasks.permutations[1])
    assert torch.equal(PermutedTasks(data, 5, seed=5).permutations[1], perm)    # seeded, whatever num_tasks
    assert not torch.equal(PermutedTasks(data, 3, seed=6).permutations[1], perm)
    assert t1.name == "permuted-tiny/1" and len(tasks.test(2)) == 10
    with pytest.raises(ValueError, match="permutation: expected shape"):
        permute_pixels(data.train.tensors[0], perm[:5])
    with pytest.raises(ValueError, match=r"task must be in 0..2, got 3"):
        tasks.task(3)


# ----------------------------------------------------------------------------- the claims' quick runs


def test_quick_no_forgetting_keeps_supsup_exact_and_measures_the_fine_tuned_drop(quick_claim):
    m = quick_claim("supsup", "no_forgetting")["metrics"]
    assert m["supsup_accuracy_final"] == m["supsup_accuracy_just_learned"]      # fixed weights, one mask per task
    assert m["supsup_max_forgetting"] == 0.0
    matrix = m["fine_tuning_accuracy_matrix"][str(m["fine_tuning_best_lr"])]
    assert len(matrix) == len(m["supsup_accuracy_final"]) == 3
    assert m["fine_tuning_drop"] == pytest.approx([matrix[j][j] - matrix[-1][j] for j in range(2)], abs=0.01)


def test_quick_task_inference_counts_every_batch_and_reports_chance(quick_claim):
    m = quick_claim("supsup", "task_inference")["metrics"]
    assert m["trials"] == 3 * 2 and m["chance"] == pytest.approx(100 / 3)
    assert 0 <= m["untrained_task_inference_accuracy"] <= 100 and 0 <= m["task_inference_accuracy"] <= 100
    assert len(m["confusions"]) == round(m["trials"] * (1 - m["task_inference_accuracy"] / 100))
