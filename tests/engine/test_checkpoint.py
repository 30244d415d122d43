import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from archzoo.engine.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from archzoo.engine.train import train

STEPS = 12          # 2N
TRAIN = dict(steps=STEPS, batch_size=8, lr=3e-3, optimizer="adamw", weight_decay=0.01, warmup_steps=3,
             schedule="cosine", grad_clip=0.5, seed=1, progress=False)


def random_data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g))


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 4))


class Crash(Exception):
    pass


def crash_after(n):
    """A cross-entropy loss that raises on its (n+1)-th call, like a process killed mid-run."""
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        if len(calls) > n:
            raise Crash
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    return loss_fn


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    straight = mlp(seed=0)
    expected = train(straight, random_data(), **TRAIN)

    with pytest.raises(Crash):
        train(mlp(seed=0), random_data(), loss_fn=crash_after(STEPS // 2), checkpoint_dir=tmp_path,
              checkpoint_every=STEPS // 2, **TRAIN)
    assert load_checkpoint(tmp_path / "last", model=mlp(seed=0))["step"] == STEPS // 2

    resumed = mlp(seed=7)                       # fresh objects, different init: all state comes from the checkpoint
    result = train(resumed, random_data(), checkpoint_dir=tmp_path, resume=True, **TRAIN)
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters()))
    assert result.history == expected.history


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    model = mlp(seed=0)
    first = train(model, random_data(), checkpoint_dir=tmp_path, **TRAIN)
    again = mlp(seed=3)
    second = train(again, random_data(), checkpoint_dir=tmp_path, resume=True, **TRAIN)
    assert second.history == first.history
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def saved(tmp_path, step=5, extra=None):
    model = mlp(seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    return save_checkpoint(tmp_path / "ckpt", model=model, optimizer=opt, step=step, extra=extra), model, opt


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    path, model, opt = saved(tmp_path, extra={"note": "hi"})
    after_save = torch.rand(3)
    other = mlp(seed=9)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-3)
    meta = load_checkpoint(path, model=other, optimizer=other_opt)
    assert meta["step"] == 5 and meta["extra"] == {"note": "hi"}
    assert torch.equal(torch.rand(3), after_save)                # the RNG continues where it was saved
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))
    for p, q in zip(model.parameters(), other.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], other_opt.state[q][key])
    assert other_opt.param_groups[0]["betas"] == opt.param_groups[0]["betas"]


def test_checkpoint_never_pickles(tmp_path, monkeypatch):
    path, _, _ = saved(tmp_path)
    assert not [p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".bin")]

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    model = mlp(seed=1)
    load_checkpoint(path, model=model, optimizer=torch.optim.AdamW(model.parameters()))


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_damaged_weights_raise_checkpoint_error_naming_the_file(tmp_path, damage):
    path, _, _ = saved(tmp_path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(path, model=mlp(seed=0))


def test_missing_meta_json_raises_checkpoint_error(tmp_path):
    path, _, _ = saved(tmp_path)
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(path, model=mlp(seed=0))


def test_missing_file_raises_checkpoint_error(tmp_path):
    path, _, _ = saved(tmp_path)
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        load_checkpoint(path, model=mlp(seed=0))


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path, _, _ = saved(tmp_path, step=5)
    with pytest.raises(TypeError):
        saved(tmp_path, step=6, extra={"not json": object()})
    assert load_checkpoint(path, model=mlp(seed=0))["step"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]          # no temporary directory left behind


def test_a_new_save_replaces_the_old_one(tmp_path):
    saved(tmp_path, step=5)
    path, _, _ = saved(tmp_path, step=6)
    assert load_checkpoint(path, model=mlp(seed=0))["step"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_a_crash_between_the_two_renames_falls_back_to_the_previous_checkpoint(tmp_path):
    path, _, _ = saved(tmp_path)
    kept = path.rename(tmp_path / ".ckpt.old-abc")                   # the state after the first rename
    assert find_checkpoint(path) == kept
    assert find_checkpoint(tmp_path / "elsewhere") is None


def test_resume_without_meta_json_refuses_and_keeps_the_files(tmp_path):
    train(mlp(seed=0), random_data(), checkpoint_dir=tmp_path, **{**TRAIN, "steps": 2})
    (tmp_path / "last" / "meta.json").unlink()
    before = {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()}
    with pytest.raises(CheckpointError, match="not a complete checkpoint.*meta.json") as e:
        train(mlp(seed=0), random_data(), checkpoint_dir=tmp_path, resume=True, **TRAIN)
    assert str(tmp_path / "last") in str(e.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()} == before    # nothing overwritten


def test_resume_with_no_checkpoint_at_all_refuses(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(mlp(seed=0), random_data(), checkpoint_dir=tmp_path, resume=True, **TRAIN)
    assert not (tmp_path / "last").exists()


@pytest.mark.parametrize("step", ["five", 2.5, None, -1, True])
def test_a_step_that_is_not_a_count_raises_checkpoint_error(tmp_path, step):
    path, _, _ = saved(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "step": step}))
    with pytest.raises(CheckpointError, match="meta.json: step must be an integer"):
        load_checkpoint(path, model=mlp(seed=0))


def test_resuming_with_another_optimizer_names_both(tmp_path):
    train(mlp(seed=0), random_data(), checkpoint_dir=tmp_path, **{**TRAIN, "steps": 2})
    with pytest.raises(CheckpointError, match="saved with the optimizer AdamW, not SGD"):
        train(mlp(seed=0), random_data(), checkpoint_dir=tmp_path, resume=True, **{**TRAIN, "optimizer": "sgd"})


def test_a_checkpoint_without_the_optimizer_name_is_still_checked_by_its_hyperparameters(tmp_path):
    path, _, _ = saved(tmp_path)                                      # AdamW, as written before names were recorded
    meta = json.loads((path / "meta.json").read_text())
    del meta["optimizers"]
    (path / "meta.json").write_text(json.dumps(meta))
    model = mlp(seed=0)
    with pytest.raises(CheckpointError, match=r"optimizer.json: hyperparameters \['amsgrad', 'betas'.*unknown to SGD"):
        load_checkpoint(path, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    load_checkpoint(path, model=model, optimizer=torch.optim.AdamW(model.parameters()))


def test_an_optimizer_state_that_does_not_fit_names_the_file(tmp_path):
    path, _, _ = saved(tmp_path)
    model = mlp(seed=0)
    head_only = torch.optim.AdamW(model[-1].parameters())            # 2 parameters where the checkpoint has 4
    with pytest.raises(CheckpointError, match="optimizer.json: does not fit the optimizer AdamW"):
        load_checkpoint(path, model=model, optimizer=head_only)


@pytest.mark.parametrize("kwargs, match", [(dict(grad_clip=-1.0), "grad_clip must be > 0"),
                                           (dict(grad_clip=0.0), "grad_clip must be > 0"),
                                           (dict(warmup_steps=-1), "warmup_steps must be >= 0")])
def test_a_negative_clip_or_warmup_is_refused_before_training(kwargs, match):
    model = mlp(seed=0)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        train(model, random_data(), **{**TRAIN, **kwargs})
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
