"""Manifold Mixup (Verma et al. 2018, arXiv:1806.05236): Eq. 1 at the chosen layer exactly (float64), Eq. 2's loss
as cross-entropy against the mixed target, lambda = 1 as the plain forward, the hook gone after the forward, the
draws of Alg. 1, resume bit for bit, two registered classifiers (ResNet-20, ViT) trained by the step, the preset's
parameter count, the flattening measure and the quick claims."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import archzoo
from archzoo.engine.trainer import Trainer
from archzoo.papers.manifold_mixup import ManifoldMixup, default_mixup_layers, input_mixup
from archzoo.papers.manifold_mixup.claims import class_spectra, effective_rank
from archzoo.papers.manifold_mixup.mixup import INPUT, mix, mixed_forward, mixing_at, mixup_cross_entropy

B = 6


def tiny(name: str) -> torch.nn.Module:
    """Two registered classifiers of different kinds at test size, in float64 and eval mode."""
    kw = {"resnet20": dict(width=4, in_chans=1), "vit_ti16": dict(img_size=8, patch_size=4, in_chans=1, dim=16,
                                                                   depth=3, heads=2),
          "mixup_mlp": dict(img_size=8, hidden=(16, 16))}[name]
    torch.manual_seed(0)
    return archzoo.create_model(name, num_classes=5, **kw).double().eval()


def batch(n: int = B, size: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, size, size, dtype=torch.float64, generator=g), torch.randint(0, 5, (n,), generator=g)


def capture(module: torch.nn.Module, out: list):
    """A forward hook that records what `module` hands on (after any hook registered before it)."""
    return module.register_forward_hook(lambda m, args, output: out.append(output.detach().clone()))


@pytest.mark.parametrize("name", ["resnet20", "vit_ti16", "mixup_mlp"])
def test_the_mixed_hidden_state_is_eq1_at_every_eligible_layer(name):
    model, (x, _) = tiny(name), batch()
    perm, lam = torch.randperm(B, generator=torch.Generator().manual_seed(2)), 0.3
    for layer in default_mixup_layers(model)[1:]:
        module, plain, mixed = model.get_submodule(layer), [], []
        handle = capture(module, plain)
        model(x)
        handle.remove()
        with mixing_at(model, layer, lam, perm):
            handle = capture(module, mixed)                   # registered after the mixing hook: sees its output
            model(x)
        handle.remove()
        h = plain[0]
        assert torch.equal(mixed[0], lam * h + (1 - lam) * h[perm])
        assert not torch.allclose(mixed[0], h)


def test_the_logits_are_f_k_of_the_mixed_hidden_state():
    model, (x, _) = tiny("mixup_mlp"), batch()
    perm, lam = torch.randperm(B), 0.7
    blocks = model.blocks
    h = blocks[1](blocks[0](x.flatten(1)))                                  # g_k(x), k = 2
    expected = model.head(blocks[2](lam * h + (1 - lam) * h[perm]))         # f_k(Mix_lambda(g_k(x), g_k(x')))
    torch.testing.assert_close(mixed_forward(model, x, "blocks.1", lam, perm), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["resnet20", "vit_ti16"])
def test_lambda_one_is_the_unmixed_forward_at_every_layer(name):
    model, (x, _) = tiny(name), batch()
    perm = torch.randperm(B)
    for layer in default_mixup_layers(model):
        torch.testing.assert_close(mixed_forward(model, x, layer, 1.0, perm), model(x), rtol=0, atol=0)


def test_layer_zero_is_input_mixup():
    model, (x, _) = tiny("resnet20"), batch()
    perm = torch.randperm(B)
    torch.testing.assert_close(mixed_forward(model, x, INPUT, 0.4, perm), model(0.4 * x + 0.6 * x[perm]))
    assert input_mixup(alpha=0.5).layers == [INPUT]


def test_the_loss_is_cross_entropy_against_the_mixed_target():
    logits, y = torch.randn(B, 5, dtype=torch.float64), torch.randint(0, 5, (B,))
    perm, lam = torch.randperm(B), 0.35
    target = mix(F.one_hot(y, 5).double(), perm, lam)                       # Mix_lambda(y, y'), Eq. 2
    loss = mixup_cross_entropy(logits, y, perm, lam)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))
    torch.testing.assert_close(loss, lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm]))


def test_the_hook_is_removed_after_the_forward_and_after_an_error():
    model, (x, _) = tiny("resnet20"), batch()
    module = model.get_submodule("stages.0")
    mixed_forward(model, x, "stages.0", 0.5, torch.randperm(B))
    assert not module._forward_hooks
    with pytest.raises(ValueError, match="perm must have shape"):
        mixed_forward(model, x, "stages.0", 0.5, torch.randperm(B + 1))     # raised inside the hook
    assert not module._forward_hooks


def test_a_layer_off_the_path_or_run_twice_is_refused():
    model = tiny("resnet20")
    with pytest.raises(ValueError, match="did not run"):
        with mixing_at(model, "stages.0", 0.5, torch.randperm(B)):
            pass
    shared = torch.nn.Linear(4, 4).double()
    twice = torch.nn.Sequential(shared, shared)
    with pytest.raises(ValueError, match="more than once"):
        mixed_forward(twice, torch.randn(B, 4, dtype=torch.float64), "0", 0.5, torch.randperm(B))


def test_default_layers_and_bad_names():
    assert default_mixup_layers(tiny("resnet20")) == ["input", "stages.0", "stages.1"]      # the paper's k in {0,1,2}
    assert default_mixup_layers(tiny("vit_ti16")) == ["input", "encoder.blocks.0", "encoder.blocks.1"]
    with pytest.raises(ValueError, match="none of the block containers"):
        default_mixup_layers(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="unknown layers"):
        ManifoldMixup(["input", "stages.9"]).eligible(tiny("resnet20"))
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ManifoldMixup(alpha=-1.0)


def test_the_draws_follow_alg1():
    step, layers = ManifoldMixup(alpha=2.0), ["input", "a", "b"]
    draws = [step.draw(seed=0, step=t, batch=8, layers=layers) for t in range(400)]
    lams = torch.tensor([d.lam for d in draws])
    assert 0.0 < lams.min() and lams.max() < 1.0
    assert abs(lams.mean().item() - 0.5) < 0.03                             # Beta(2, 2): mean 1/2, sd 0.22
    assert abs(lams.var().item() - 0.05) < 0.01                             # variance 1 / (4 (2 alpha + 1)) = 0.05
    assert {d.layer for d in draws} == set(layers)
    assert all(sorted(d.perm.tolist()) == list(range(8)) for d in draws)
    again = step.draw(seed=0, step=7, batch=8, layers=layers)
    assert (again.lam, again.layer, again.perm.tolist()) == (draws[7].lam, draws[7].layer, draws[7].perm.tolist())
    assert step.draw(seed=1, step=7, batch=8, layers=layers).lam != draws[7].lam
    assert ManifoldMixup(alpha=0.0).draw(0, 0, 8, layers).lam == 1.0


def mixup_trainer(tmp_path, steps: int, name: str = "resnet20") -> Trainer:
    model = tiny(name).float().train()
    x, y = batch(32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Trainer(model, opt, steps=steps, data=TensorDataset(x.float(), y), batch_size=8, step=ManifoldMixup(),
                   seed=3, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)


def test_a_resumed_run_makes_the_same_draws_and_weights(tmp_path):
    whole = mixup_trainer(tmp_path / "whole", 6)
    whole.fit()
    first = mixup_trainer(tmp_path / "split", 3)
    first.fit()
    torch.manual_seed(123)                                  # whatever else happens in between moves nothing
    second = mixup_trainer(tmp_path / "split", 6)
    second.fit(resume=True)
    keys = ("lam", "layer", "loss")
    assert [{k: e[k] for k in keys} for e in second.history] == [{k: e[k] for k in keys} for e in whole.history]
    assert len({e["lam"] for e in whole.history}) == 6
    for (k, a), b in zip(whole.models["model"].state_dict().items(), second.models["model"].state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", ["resnet20", "vit_ti16"])
def test_manifold_mixup_trains_registered_classifiers(name, tmp_path):
    trainer = mixup_trainer(tmp_path, 30, name)
    trainer.fit()
    model, (x, y) = trainer.models["model"].eval(), batch(32)
    assert {e["layer"] for e in trainer.history} == {0, 1, 2}               # every eligible layer was mixed at
    after = F.cross_entropy(model(x.float()), y).item()
    torch.manual_seed(0)
    before = F.cross_entropy(tiny(name).float()(x.float()), y).item()
    assert after < 0.8 * before


def test_mixup_mlp_parameter_count():
    assert sum(p.numel() for p in archzoo.create_model("mixup_mlp").parameters()) == 933_518   # 784-512x3-12-10


def test_effective_rank_counts_the_directions_of_variance():
    g = torch.Generator().manual_seed(0)
    coords = torch.randn(500, 3, dtype=torch.float64, generator=g)
    basis = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=g)).Q[:, :3]
    flat = coords @ basis.T + 5.0                                           # 3 equal directions, then nothing
    assert effective_rank(torch.linalg.svdvals(flat - flat.mean(0))) == pytest.approx(3.0, abs=0.1)
    iso = torch.randn(500, 12, dtype=torch.float64, generator=g)
    assert effective_rank(torch.linalg.svdvals(iso - iso.mean(0))) == pytest.approx(12.0, abs=0.6)
    y = torch.cat([torch.zeros(500), torch.ones(500)]).long()
    spectra = class_spectra(torch.cat([flat, iso]), y, 2)
    assert spectra.shape == (2, 12) and spectra[0, 3:].max() < 1e-9 and spectra[1].min() > 0.1


@pytest.mark.parametrize("name", ["error_and_calibration", "flattening"])
def test_quick_claims_run(quick_claim, name):
    record = quick_claim("manifold_mixup", name)
    assert record["metrics"]["methods"]
    assert isinstance(record["passed"], bool)


def test_alpha_zero_step_is_erm(tmp_path):
    x, y = batch(16)
    losses = {}
    for label, step in (("erm", None), ("alpha0", ManifoldMixup(alpha=0.0))):
        torch.manual_seed(0)
        model = tiny("mixup_mlp").train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = Trainer(model, opt, steps=4, data=TensorDataset(x, y), batch_size=8, step=step, progress=False)
        losses[label] = [e["loss"] for e in trainer.fit().history]
    assert losses["erm"] == losses["alpha0"]
