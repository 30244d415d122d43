"""The Trainer: two-player and two-stream training, bit-exact resume, hooks, aux losses, EMA, evaluation."""

import ast
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from archzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from archzoo.engine.hooks import EMA, Every, GradNorm, Hook
from archzoo.engine.streams import StepSampler, Stream
from archzoo.engine.trainer import Trainer, supervised_step


class Crash(Exception):
    pass


def crashing(step_fn, at: int):
    """`step_fn`, except that the step after `at` steps raises, like a process killed mid-run."""

    def step(trainer, batches):
        if trainer.step == at:
            raise Crash
        return step_fn(trainer, batches)

    return step


def blobs(n=48, seed=0, labelled=True):
    """Three separable classes in 4 dimensions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g) * 0.4
    x[torch.arange(n), y] += 2.0
    return TensorDataset(x, y) if labelled else TensorDataset(x)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- a GAN: two models, two optimizers


REAL_MEAN = torch.tensor([2.0, -1.0])


def gan(seed: int):
    torch.manual_seed(seed)
    g = nn.Linear(2, 2)                                            # noise -> points
    d = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Dropout(0.1), nn.Linear(16, 1))
    opts = {"G": torch.optim.Adam(g.parameters(), lr=0.1, betas=(0.5, 0.999)),
            "D": torch.optim.Adam(d.parameters(), lr=0.1, betas=(0.5, 0.999))}
    return {"G": g, "D": d}, opts


def gan_step(trainer, batches):
    """One discriminator update on real and generated points, then one generator update (non-saturating loss)."""
    G, D = trainer.nets["G"], trainer.nets["D"]
    (real,) = batches["real"]
    fake = G(torch.randn(real.shape[0], 2))
    d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
    loss_d = trainer.backward(d_loss, optimizer="D")
    loss_g = trainer.backward(F.softplus(-D(fake)).mean(), optimizer="G")
    return {"loss_D": loss_d, "loss_G": loss_g}


def gan_trainer(seed=0, steps=40, step=gan_step, **kw):
    models, opts = gan(seed)
    real = TensorDataset(REAL_MEAN + 0.3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1)))
    scheds = {"G": torch.optim.lr_scheduler.StepLR(opts["G"], step_size=10, gamma=0.5)}
    return Trainer(models, opts, scheds, steps=steps, data={"real": real}, batch_size=16, step=step,
                   grad_clip=5.0, seed=3, progress=False, **kw)


def test_gan_moves_the_generated_points_to_the_data():
    trainer = gan_trainer()
    with torch.no_grad():
        before = trainer.models["G"](torch.randn(256, 2)).mean(0)
    trainer.fit()
    with torch.no_grad():
        after = trainer.models["G"](torch.randn(256, 2)).mean(0)
    assert (after - REAL_MEAN).norm() < 0.25 * (before - REAL_MEAN).norm()
    entry = trainer.history[-1]
    assert {"loss_D", "loss_G", "lr/G", "lr/D", "grad_norm/G", "grad_norm/D"} <= set(entry)
    assert entry["lr/G"] == pytest.approx(0.1 * 0.5 ** 3) and entry["lr/D"] == 0.1


def test_gan_resumes_bit_for_bit_from_a_checkpoint_taken_mid_run(tmp_path):
    straight = gan_trainer(steps=12)
    straight.fit()
    with pytest.raises(Crash):
        gan_trainer(steps=12, step=crashing(gan_step, at=8), checkpoint_dir=tmp_path, checkpoint_every=5).fit()
    assert sorted(p.name for p in (tmp_path / "last").glob("*.safetensors")) == [
        "model.D.safetensors", "model.G.safetensors", "optimizer.D.safetensors", "optimizer.G.safetensors",
        "rng.safetensors"]
    resumed = gan_trainer(seed=9, steps=12, checkpoint_dir=tmp_path)    # other init: all state comes from the file
    resumed.fit(resume=True)
    assert all(same_weights(straight.models[k], resumed.models[k]) for k in ("G", "D"))
    assert resumed.history == straight.history


# ----------------------------------------------------------------------------- semi-supervised: two streams, EMA


def fixmatch_step(trainer, batches):
    """FixMatch-like: cross-entropy on labelled points, plus cross-entropy of a strongly perturbed unlabelled
    point against the confident prediction on a weakly perturbed copy of it."""
    net = trainer.nets["model"]
    x, y = batches["labeled"]
    (u,) = batches["unlabeled"]
    with torch.no_grad():
        confidence, pseudo = F.softmax(net(u + 0.05 * torch.randn_like(u)), -1).max(-1)
    mask = (confidence >= 0.8).float()
    unsupervised = (F.cross_entropy(net(u + 0.5 * torch.randn_like(u)), pseudo, reduction="none") * mask).mean()
    loss = trainer.backward(F.cross_entropy(net(x), y) + unsupervised)
    return {"loss": loss, "mask_rate": mask.mean()}


def semi_supervised_trainer(seed=0, steps=30, step=fixmatch_step, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    ema = EMA("model", decay=0.8)
    test = blobs(60, seed=2)

    def ema_accuracy(trainer):
        return {"accuracy": (ema.module(test.tensors[0]).argmax(-1) == test.tensors[1]).float().mean()}

    data = {"labeled": TensorDataset(*blobs(6).tensors), "unlabeled": blobs(96, seed=1, labelled=False)}
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), steps=steps, data=data,
                      batch_size={"labeled": 3, "unlabeled": 12}, step=step, hooks=[ema], evaluate=ema_accuracy,
                      eval_every=10, seed=5, progress=False, **kw)
    return trainer, ema


def test_semi_supervised_toy_learns_and_its_ema_copy_is_evaluated():
    trainer, ema = semi_supervised_trainer()
    result = trainer.fit()
    assert [e["step"] for e in result.evaluations] == [0, 10, 20, 30]
    assert result.evaluations[-1]["accuracy"] >= 0.9 > result.evaluations[0]["accuracy"]
    assert max(h["mask_rate"] for h in result.history) > 0                 # the unlabelled stream is used
    assert not same_weights(ema.module, trainer.models["model"]) and ema.updates == 30


def test_semi_supervised_toy_resumes_bit_for_bit_with_its_ema_copy(tmp_path):
    straight, straight_ema = semi_supervised_trainer(steps=20)
    straight.fit()
    crashed, _ = semi_supervised_trainer(steps=20, step=crashing(fixmatch_step, at=13), checkpoint_dir=tmp_path,
                                         checkpoint_every=10)
    with pytest.raises(Crash):
        crashed.fit()
    resumed, resumed_ema = semi_supervised_trainer(seed=4, steps=20, checkpoint_dir=tmp_path)
    resumed.fit(resume=True)
    assert same_weights(straight.models["model"], resumed.models["model"])
    assert same_weights(straight_ema.module, resumed_ema.module) and resumed_ema.updates == 20
    assert resumed.history == straight.history and resumed.evaluations == straight.evaluations


def test_streams_are_pure_functions_of_seed_stream_and_step():
    data = blobs(20)
    train = Stream("train", data, 4, seed=7)
    assert torch.equal(train.sampler.indices(3), StepSampler(20, 4, seed=7).indices(3))   # the engine's old stream
    a, b = Stream("labeled", data, 4, seed=7), Stream("unlabeled", data, 4, seed=7)
    assert torch.equal(a.sampler.indices(5), Stream("labeled", data, 4, seed=7).sampler.indices(5))
    assert not torch.equal(a.sampler.indices(0), b.sampler.indices(0))
    assert not torch.equal(a.sampler.indices(0), train.sampler.indices(0))
    x, _ = Stream("train", data, 4, seed=7, world_size=2).batch(0, rank=1, device=torch.device("cpu"))
    assert torch.equal(x, data.tensors[0][StepSampler(20, 8, seed=7).indices(0)[4:]])   # rank 1's half


# ----------------------------------------------------------------------------- hooks


def linear_trainer(steps=6, **kw):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    kw.setdefault("data", blobs())
    kw.setdefault("batch_size", 8)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=steps, seed=0, progress=False, **kw)


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def on_loss(self, trainer, optimizer, loss):
        self.calls.append(("loss", trainer.step))

    def after_backward(self, trainer, optimizer):
        assert all(p.grad is not None for p in trainer.models["model"].parameters())
        self.calls.append(("backward", trainer.step))

    def after_step(self, trainer, optimizer):
        self.calls.append(("step", trainer.step))

    def on_step_end(self, trainer):
        self.calls.append(("end", trainer.step))

    def on_evaluate(self, trainer, metrics):
        self.calls.append(("evaluate", trainer.step, metrics["n"]))


def test_hooks_run_in_order_at_each_step_and_evaluation():
    hook = Recorder()
    linear_trainer(steps=3, hooks=[hook], evaluate=lambda tr: {"n": len(tr.evaluations)}, eval_every=2).fit()
    assert hook.calls == [("start", 0), ("evaluate", 0, 0),
                          ("loss", 0), ("backward", 0), ("step", 0), ("end", 1),
                          ("loss", 1), ("backward", 1), ("step", 1), ("end", 2), ("evaluate", 2, 1),
                          ("loss", 2), ("backward", 2), ("step", 2), ("end", 3), ("evaluate", 3, 2)]


class PruningMask(Hook):
    """Lottery-ticket style: the masked weights are re-zeroed after every update, and the mask is checkpointed."""

    def __init__(self, mask):
        self.mask = mask

    def after_step(self, trainer, optimizer):
        with torch.no_grad():
            trainer.models["model"].weight.mul_(self.mask)

    def state_dict(self):
        return {"mask": self.mask}

    def load_state_dict(self, state):
        self.mask = state["mask"]


def test_a_pruning_hook_keeps_masked_weights_at_zero_and_its_state_resumes(tmp_path):
    mask = (torch.arange(12).view(3, 4) % 2).float()
    trainer = linear_trainer(hooks=[PruningMask(mask)], checkpoint_dir=tmp_path)
    trainer.fit()
    weight = trainer.models["model"].weight
    assert torch.all(weight[mask == 0] == 0) and torch.all(weight[mask == 1] != 0)
    restored = PruningMask(torch.ones(3, 4))
    linear_trainer(hooks=[restored], checkpoint_dir=tmp_path).fit(resume=True)
    assert torch.equal(restored.mask, mask)


def test_every_n_calls_its_function_after_every_nth_step():
    seen = []
    linear_trainer(steps=7, hooks=[Every(3, lambda tr: seen.append(tr.step))]).fit()
    assert seen == [3, 6]


def test_grad_norm_hook_logs_the_norm_before_clipping_and_clips():
    norms = []

    class Measure(Hook):
        def after_backward(self, trainer, optimizer):
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in trainer.models["model"].parameters()])))

    trainer = linear_trainer(steps=1, hooks=[Measure(), GradNorm(max_norm=1e-3)])
    before = torch.nn.utils.parameters_to_vector(trainer.models["model"].parameters()).detach().clone()
    trainer.fit()
    after = torch.nn.utils.parameters_to_vector(trainer.models["model"].parameters()).detach()
    assert trainer.history[0]["grad_norm"] == pytest.approx(norms[0]) and norms[0] > 1e-3
    assert float((after - before).norm()) == pytest.approx(0.1 * 1e-3, rel=1e-4)      # lr x the clipped norm


def test_the_nan_guard_names_the_step_and_the_optimizer():
    def bad(trainer, batches):
        loss = trainer.nets["D"](trainer.nets["G"](torch.randn(4, 2))).mean()
        return {"loss": trainer.backward(loss * float("inf") if trainer.step == 2 else loss, optimizer="G")}

    trainer = gan_trainer(step=bad)
    with pytest.raises(FloatingPointError, match=r"step 3 of 40 \(optimizer 'G'\)"):
        trainer.fit()


# ----------------------------------------------------------------------------- auxiliary losses


class WithAux(nn.Module):
    """A linear layer whose forward leaves an auxiliary loss c * ||W||^2 (the convention: declared in __init__)."""

    def __init__(self, c: float, dim_in: int = 4, dim_out: int = 3):
        super().__init__()
        self.linear, self.c = nn.Linear(dim_in, dim_out), c
        self.aux_loss = None

    def forward(self, x):
        self.aux_loss = self.c * self.linear.weight.square().sum()
        return self.linear(x)


def test_aux_losses_are_added_with_their_weight_logged_and_cleared():
    torch.manual_seed(0)
    model = nn.Sequential(WithAux(0.5, 4, 5), nn.ReLU(), WithAux(2.0, 5, 3))
    reference = copy.deepcopy(model)
    x, y = blobs(8).tensors
    ce = F.cross_entropy(reference(x), y)
    aux = reference[0].aux_loss + reference[2].aux_loss                # 0.5 ||W_1||^2 + 2 ||W_2||^2
    (ce + 0.1 * aux).backward()
    expected = [p.detach() - 0.1 * p.grad for p in reference.parameters()]      # one SGD step at lr 0.1

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=1, data=TensorDataset(x, y),
                      batch_size=8, aux_weight=0.1, progress=False)
    trainer.fit()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert trainer.history[0]["aux_loss"] == pytest.approx(float(aux.detach()))
    assert trainer.history[0]["loss"] == pytest.approx(float((ce + 0.1 * aux).detach()))
    assert model[0].aux_loss is None and model[2].aux_loss is None


def test_an_aux_loss_left_by_an_evaluation_does_not_reach_training():
    torch.manual_seed(0)
    model, probe = nn.Linear(4, 3), WithAux(1.0)                         # the probe runs only in evaluations
    trainer = Trainer({"model": model, "probe": probe}, torch.optim.SGD(model.parameters(), lr=0.1), steps=2,
                      data=blobs(8), batch_size=8, evaluate=lambda tr: {"out": probe(torch.ones(1, 4)).sum()},
                      eval_every=1, step=supervised_step(model="model"), progress=False)
    trainer.fit()
    assert len(trainer.evaluations) == 3 and not any("aux_loss" in h for h in trainer.history)


# ----------------------------------------------------------------------------- EMA, step decay, evaluation


def test_ema_follows_its_recurrence_over_the_weights_of_every_step():
    weights = []
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = EMA("model", decay=0.7)
    record = Every(1, lambda tr: weights.append({k: v.clone() for k, v in tr.models["model"].state_dict().items()}))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=4, data=blobs(), batch_size=8,
            hooks=[ema, record], progress=False).fit()
    for w in weights:
        expected = {k: 0.7 * v + 0.3 * w[k] if v.is_floating_point() else w[k] for k, v in expected.items()}
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_step_decay_divides_the_learning_rate_at_30_60_and_90_percent_and_resumes(tmp_path):
    from archzoo.engine.schedules import step_decay

    def trainer(**kw):
        t = linear_trainer(steps=20, **kw)
        t.schedulers["scheduler"] = step_decay(t.optimizers["optimizer"], steps=20, at=(0.3, 0.6, 0.9))
        return t

    history = trainer().fit().history
    expected = [0.1] * 6 + [0.01] * 6 + [1e-3] * 6 + [1e-4] * 2
    assert [h["lr"] for h in history] == pytest.approx(expected)
    with pytest.raises(Crash):
        crashed = trainer(checkpoint_dir=tmp_path, checkpoint_every=10)
        crashed.step_fn = crashing(crashed.step_fn, at=14)
        crashed.fit()
    resumed = trainer(checkpoint_dir=tmp_path).fit(resume=True).history
    assert [h["lr"] for h in resumed] == [h["lr"] for h in history]


def test_bad_step_decay_fractions_raise_value_errors():
    from archzoo.engine.schedules import step_decay

    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    for at in ((0.6, 0.3), (0.5, 1.5)):
        with pytest.raises(ValueError, match="increasing fractions"):
            step_decay(opt, steps=10, at=at)


def test_evaluation_restores_modes_and_goes_to_the_json_log(tmp_path):
    def evaluate(trainer):
        trainer.models["model"].eval()                           # an evaluation that forgets to switch back
        assert not torch.is_grad_enabled()
        return {"accuracy": 50.0}

    log = tmp_path / "log.jsonl"
    trainer = linear_trainer(steps=4, evaluate=evaluate, eval_every=3, log_path=log)
    trainer.fit()
    assert trainer.models["model"].training
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["step"] for line in lines if "eval" in line] == [0, 3, 4]
    assert [line["step"] for line in lines if "eval" not in line] == [1, 2, 3, 4]


# ----------------------------------------------------------------------------- names, bad input


def test_named_entries_and_states_round_trip_through_the_checkpoint(tmp_path):
    models, opts = gan(0)
    models["G"](torch.randn(3, 2)).sum().backward()
    opts["G"].step()
    save_checkpoint(tmp_path / "c", models=models, optimizers=opts, states={"ema": {"n": 3, "w": torch.ones(2)}},
                    step=1)
    other, other_opts = gan(5)
    meta = load_checkpoint(tmp_path / "c", models=other, optimizers=other_opts)
    assert same_weights(other["G"], models["G"]) and same_weights(other["D"], models["D"])
    assert other_opts["G"].state_dict()["state"].keys() == opts["G"].state_dict()["state"].keys()
    assert meta["states"]["ema"]["n"] == 3 and torch.equal(meta["states"]["ema"]["w"], torch.ones(2))
    with pytest.raises(ValueError, match="not both"):
        save_checkpoint(tmp_path / "d", model=models["G"], models={"model": models["D"]}, step=1)


@pytest.mark.parametrize("kw, message", [
    (dict(batch_size={"other": 4}), "must match the data streams"),
    (dict(batch_size=None), "batch_size is required"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(eval_every=-1), "eval_every"),
])
def test_bad_trainer_arguments_raise_value_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        linear_trainer(**kw)


def test_naming_an_unknown_optimizer_or_leaving_two_unnamed_raises_a_value_error():
    def unnamed(trainer, batches):
        return {"loss": trainer.backward(trainer.nets["D"](batches["real"][0]).mean())}

    with pytest.raises(ValueError, match=r"expected one of \['G', 'D'\]; name one"):
        gan_trainer(step=unnamed).fit()
    with pytest.raises(ValueError, match="got 'E'"):
        gan_trainer(step=lambda tr, b: {"loss": tr.backward(tr.nets["D"](b["real"][0]).mean(), "E")}).fit()
    with pytest.raises(ValueError, match="expected one of"):
        gan_trainer(step=supervised_step()).fit()                # the default step trains one model


def test_the_training_engine_does_not_import_the_claim_runner():
    engine = Path(__file__).parents[2] / "src" / "archzoo" / "engine"
    for name in ("runtime", "streams", "schedules", "hooks", "trainer", "train", "checkpoint", "distributed"):
        tree = ast.parse((engine / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "claims" not in imported, f"engine/{name}.py imports engine/claims.py"
