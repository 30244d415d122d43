"""The Lottery Ticket Hypothesis (Frankle & Carbin 2018, arXiv:1803.03635): the presets' sizes (Fig. 2), magnitude
masks (layer-wise and global) against `torch.nn.utils.prune`, the pruned fraction of each round, pruned weights
that nothing can move, rewinding to iteration 0 and k, masks through checkpoint and resume, and the claim."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import TensorDataset

import archzoo
from archzoo.engine.hooks import Every
from archzoo.engine.trainer import Trainer, supervised_step
from archzoo.papers.lottery_ticket import (
    IterativeMagnitudePruning,
    apply_masks,
    layer_rates,
    magnitude_masks,
    masks_of,
    weights_left,
)
from archzoo.papers.lottery_ticket.pruning import originals_of

# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name, params", [("lenet_300_100", 266_610), ("conv2", 4_301_642), ("conv4", 2_425_930),
                                          ("conv6", 2_262_602)])
def test_presets_have_the_sizes_of_fig2_on_the_papers_inputs(name, params):
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_lenet_weights_are_784_300_100_10_and_the_conv_nets_take_fashion_mnist():
    lenet = archzoo.create_model("lenet_300_100")
    assert [tuple(m.weight.shape) for m in (lenet.features[0], lenet.features[2], lenet.head)] == \
        [(300, 784), (100, 300), (10, 100)]
    conv6 = archzoo.create_model("conv6", in_chans=1, img_size=28)       # 28 -> 14 -> 7 -> 3 pixels
    assert conv6.fc[0].in_features == 256 * 3 * 3 and conv6(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="img_size must be >= 8 for 3 max pools of 2x2, got 7"):
        archzoo.create_model("conv6", img_size=7)


def test_paper_rates_prune_the_output_layer_at_half_the_rate():
    model = archzoo.create_model("conv2")
    assert layer_rates(model, conv=0.1, fc=0.2, output=0.1) == {"convs.0": 0.1, "convs.2": 0.1, "fc.0": 0.2,
                                                               "fc.2": 0.2, "head": 0.1}
    assert set(layer_rates(model, fc=0.2)) == {"fc.0", "fc.2", "head"}                # conv=None: not pruned


# ----------------------------------------------------------------------------- masks


def two_layers(scale_a: float = 1.0, scale_b: float = 1.0, seed: int = 0) -> nn.Sequential:
    """A hand-made net: layer 0 with weights of magnitude ~scale_a, layer 1 with ~scale_b, all magnitudes distinct."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))
    with torch.no_grad():
        for layer, scale in ((net[0], scale_a), (net[1], scale_b)):
            signs = torch.randint(0, 2, layer.weight.shape, generator=g) * 2 - 1
            layer.weight.copy_(scale * signs * (1 + torch.rand(layer.weight.shape, generator=g)))
    return net


def test_global_pruning_takes_the_small_layer_first_and_layer_wise_takes_each_layers_smallest():
    net = apply_masks(two_layers(scale_a=10.0, scale_b=0.1))            # 20 large weights, 15 small ones
    glob = magnitude_masks(net, 0.4, scope="global")                     # round(0.4 * 35) = 14 weights
    assert glob["0"].sum() == 20 and glob["1"].sum() == 1               # all 14 from the small layer
    kept = net[1].weight.abs().flatten().argmax()
    assert glob["1"].flatten()[kept] == 1                                # ... its largest one survives
    layer = magnitude_masks(net, 0.4, scope="layer")                     # round(0.4 * 20) = 8, round(0.4 * 15) = 6
    assert layer["0"].sum() == 12 and layer["1"].sum() == 9
    for name, w in (("0", net[0].weight), ("1", net[1].weight)):        # every kept |w| > every pruned |w|
        m = layer[name].bool()
        assert w.abs()[m].min() > w.abs()[~m].max()


def test_each_round_removes_exactly_round_rate_times_the_remaining_weights_of_each_layer():
    model = archzoo.create_model("lenet_300_100")
    rates = layer_rates(model, fc=0.2, output=0.1)
    apply_masks(model, names=rates)
    remaining = {name: m.numel() for name, m in masks_of(model).items()}
    for _ in range(5):
        apply_masks(model, magnitude_masks(model, rates))
        remaining = {name: n - round(rates[name] * n) for name, n in remaining.items()}
        assert {name: int(m.sum()) for name, m in masks_of(model).items()} == remaining
    assert remaining == {"features.0": 77_070, "features.2": 9_830, "head": 590}    # 0.8^5 and 0.9^5 of each layer
    assert weights_left(model) == pytest.approx(sum(remaining.values()) / 266_200)


def test_masks_only_shrink_and_pruned_weights_are_zero_in_forward_and_in_storage():
    net = apply_masks(two_layers())
    first = magnitude_masks(net, 0.5)
    apply_masks(net, first)
    second = magnitude_masks(net, 0.5)
    assert all(((second[k] == 1) <= (first[k] == 1)).all() for k in first)      # a pruned weight never returns
    for layer in net:
        mask = layer.parametrizations.weight[0].mask
        assert (layer.weight[mask == 0] == 0).all() and (layer.parametrizations.weight.original[mask == 0] == 0).all()


@pytest.mark.reference
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_equal_torch_prunes_l1_unstructured_and_global_unstructured_over_two_rounds(scope):
    ours = apply_masks(two_layers(scale_a=1.0, scale_b=0.7, seed=3))
    ref = two_layers(scale_a=1.0, scale_b=0.7, seed=3)
    params = [(ref[0], "weight"), (ref[1], "weight")]
    for _ in range(2):
        apply_masks(ours, magnitude_masks(ours, 0.3, scope=scope))
        if scope == "layer":
            for module, name in params:
                prune.l1_unstructured(module, name, amount=0.3)
        else:
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.3)
        for i in range(2):
            torch.testing.assert_close(masks_of(ours)[str(i)], ref[i].weight_mask, rtol=0, atol=0)


def test_bad_rates_and_scopes_are_value_errors():
    net = apply_masks(two_layers())
    with pytest.raises(ValueError, match=r"layers the model does not have: \['fc9'\]"):
        magnitude_masks(net, {"fc9": 0.2})
    with pytest.raises(ValueError, match=r"rates must be in \[0, 1\), got \{'0': 1.5\}"):
        magnitude_masks(net, {"0": 1.5})
    with pytest.raises(ValueError, match="global pruning takes one rate"):
        magnitude_masks(net, {"0": 0.2}, scope="global")
    with pytest.raises(ValueError, match="scope must be one of"):
        IterativeMagnitudePruning(round_steps=5, rounds=1, scope="row")
    with pytest.raises(ValueError, match=r"mask of 0: expected shape \(5, 4\), got \(4, 5\)"):
        apply_masks(net, {"0": torch.ones(4, 5)})


# ----------------------------------------------------------------------------- training with masks


def test_the_gradient_of_a_pruned_weight_cannot_move_it():
    torch.manual_seed(0)
    net = two_layers()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    F.cross_entropy(net(x), y).backward()
    opt.step()                                                   # momentum for every weight, before pruning
    apply_masks(net, magnitude_masks(apply_masks(net), 0.5))
    pruned = {k: m == 0 for k, m in masks_of(net).items()}
    hook = IterativeMagnitudePruning(round_steps=5, rounds=0)
    trainer = Trainer(net, opt, steps=5, data=TensorDataset(x, y), batch_size=8, hooks=[hook], progress=False)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    assert all((originals_of(net)[k].grad[p] == 0).all() for k, p in pruned.items())   # d(w m)/dw = m = 0
    trainer.fit()                                                # old momentum and weight decay push on them
    for k, p in pruned.items():
        assert (originals_of(net)[k][p] == 0).all() and (net[int(k)].weight[p] == 0).all()
    assert all((originals_of(net)[k][~p] != 0).all() for k, p in pruned.items())


def digits(n: int = 96) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def imp(model, *, steps=6, rounds=2, rewind_step=0, scope="layer", checkpoint_dir=None, step=None, scheduler=None,
        seed=0, **kw):
    """A Trainer with the IMP hook over `model` on random 8x8 digits; returns (trainer, hook)."""
    rates = layer_rates(model, conv=0.1, fc=0.2, output=0.1) if scope == "layer" else 0.2
    hook = IterativeMagnitudePruning(round_steps=steps, rounds=rounds, rates=rates, scope=scope,
                                     rewind_step=rewind_step,
                                     on_round_end=lambda t: {"loss": float(F.cross_entropy(t.models["model"](
                                         digits().tensors[0]), digits().tensors[1]))})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = scheduler(opt) if scheduler else None
    trainer = Trainer(model, opt, sched, steps=hook.total_steps, data=digits(), batch_size=16, hooks=[hook], seed=seed,
                      step=step, checkpoint_dir=checkpoint_dir, progress=False, **kw)
    return trainer, hook


def lenet(seed: int = 0):
    torch.manual_seed(seed)
    return archzoo.create_model("lenet_300_100", img_size=8, hidden=(30, 20))


def test_rewinding_to_init_restores_the_initial_weights_exactly_on_the_unpruned_entries():
    model = lenet()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer, hook = imp(model, steps=6, rounds=1)
    trainer.fit()
    assert [e["round"] for e in hook.log] == [0, 1] and hook.log[1]["weights_left"] < 1.0
    # rewind again after the last training, to compare with theta_0 directly
    hook.rewind(trainer)
    state = model.state_dict()
    for name, mask in masks_of(model).items():
        w = state[f"{name}.parametrizations.weight.original"]
        torch.testing.assert_close(w, init[f"{name}.weight"] * mask, rtol=0, atol=0)
    for key in ("features.0.bias", "head.bias"):
        torch.testing.assert_close(state[key], init[key], rtol=0, atol=0)


def test_rewinding_to_iteration_k_restores_the_weights_after_k_steps_and_the_schedule():
    k = 3
    schedule = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)  # noqa: E731
    plain = lenet()
    imp(plain, steps=k, rounds=0, scheduler=schedule)[0].fit()   # the first k steps of the same run, no pruning
    theta_k = {name: p.detach().clone() for name, p in originals_of(plain).items()}

    model = lenet()
    trainer, hook = imp(model, steps=6, rounds=1, rewind_step=k, scheduler=schedule)
    assert hook.total_steps == 6 + (6 - k)
    lrs = []
    trainer.hooks.append(Every(1, lambda t: lrs.append(t.optimizers["optimizer"].param_groups[0]["lr"])))
    trainer.fit()
    assert lrs[5] == 1e-2 * 0.5 ** k                             # after the rewind at step 6, the lr of step k
    hook.rewind(trainer)
    for name, mask in masks_of(model).items():
        torch.testing.assert_close(originals_of(model)[name], theta_k[name] * mask, rtol=0, atol=0)


class Crash(Exception):
    pass


def crashing_step(after: int):
    """The default supervised step, raising on its (after+1)-th call, like a process killed mid-run."""
    inner, calls = supervised_step(), []

    def step(trainer, batches):
        calls.append(1)
        if len(calls) > after:
            raise Crash
        return inner(trainer, batches)

    return step


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_and_zeros_survive_checkpoint_and_resume_in_a_fresh_setup(tmp_path, scope):
    straight, straight_hook = imp(lenet(), steps=6, rounds=3, scope=scope)
    straight.fit()

    crashed, _ = imp(lenet(), steps=6, rounds=3, scope=scope, checkpoint_dir=tmp_path, checkpoint_every=8,
                     step=crashing_step(after=15))                # checkpoint at step 8, in the first pruned round
    with pytest.raises(Crash):
        crashed.fit()
    resumed_model = lenet(seed=7)                                 # fresh objects: all state comes from the checkpoint
    resumed, resumed_hook = imp(resumed_model, steps=6, rounds=3, scope=scope, checkpoint_dir=tmp_path)
    resumed.fit(resume=True)

    model = straight.models["model"]
    for name, mask in masks_of(model).items():
        torch.testing.assert_close(masks_of(resumed_model)[name], mask, rtol=0, atol=0)
        assert (originals_of(resumed_model)[name][mask == 0] == 0).all()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values()))
    assert resumed_hook.log == straight_hook.log and resumed.history == straight.history


def test_imp_works_on_a_registered_classifier_with_batch_norm_and_rewinds_its_buffers():
    torch.manual_seed(0)
    model = archzoo.create_model("resnet20", num_classes=10, in_chans=1, width=4)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer, hook = imp(model, steps=3, rounds=1, scope="global")
    trainer.fit()
    hook.rewind(trainer)
    state = model.state_dict()
    bn = [k for k in init if k.endswith("running_mean")]
    assert bn and all(torch.equal(state[k], init[k]) for k in bn)
    assert hook.log[-1]["weights_left"] == pytest.approx(0.8, abs=1e-3)


def test_the_trainer_must_run_the_hooks_total_steps():
    trainer, hook = imp(lenet(), steps=6, rounds=2)
    trainer.steps = 12
    with pytest.raises(ValueError, match="steps must be hook.total_steps = 18 \\(3 trainings\\), got 12"):
        trainer.fit()


# ----------------------------------------------------------------------------- the claim


def test_quick_claim_runs_and_records_tickets_and_controls(quick_claim):
    record = quick_claim("lottery_ticket", "winning_tickets")
    m = record["metrics"]
    left = m["weights_left"]
    assert left["0"] == 1.0 and left["1"] < 1.0 and left["2"] < left["1"]
    assert set(m["reinit_accuracy"]) == {"2"} and 0 <= m["ticket_accuracy"]["2"] <= 100
