"""Saved models: a damaged or invalid save is a ValueError naming the file, never a silent load or half a pair."""

import json
import os

import pytest
import torch

import archzoo
from archzoo import from_pretrained, hub, registry
from archzoo.hub import CONFIG, HASH_KEY, WEIGHTS


@pytest.fixture
def saved(tmp_path):
    model = archzoo.create_model("mnist_mlp", hidden=(16,))
    model.save_pretrained(tmp_path / "m")
    return tmp_path / "m", model


def config_of(path):
    return json.loads((path / CONFIG).read_text())


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_the_config_records_the_sha256_of_the_weights(saved):
    path, model = saved
    assert config_of(path)[HASH_KEY] == hub.sha256(path / WEIGHTS)
    assert same_weights(from_pretrained(path), model)


def test_a_config_without_the_hash_from_an_older_save_still_loads(saved):
    path, model = saved
    cfg = config_of(path)
    del cfg[HASH_KEY]
    (path / CONFIG).write_text(json.dumps(cfg))
    assert same_weights(from_pretrained(path), model)


def damage(data: bytes, how: str) -> bytes:
    if how == "empty":
        return b""
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "garbage":
        return os.urandom(len(data))
    flipped = bytearray(data)
    flipped[-3] ^= 0x01                                   # one bit of the last weight
    return bytes(flipped)


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "flipped byte"])
def test_damaged_weights_raise_a_value_error_naming_the_file(saved, how):
    path, _ = saved
    (path / WEIGHTS).write_bytes(damage((path / WEIGHTS).read_bytes(), how))
    with pytest.raises(ValueError, match=f"{WEIGHTS}: SHA-256 does not match"):
        from_pretrained(path)


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_without_the_hash_unreadable_weights_still_name_the_file(saved, how):
    path, _ = saved
    cfg = config_of(path)
    del cfg[HASH_KEY]
    (path / CONFIG).write_text(json.dumps(cfg))
    (path / WEIGHTS).write_bytes(damage((path / WEIGHTS).read_bytes(), how))
    with pytest.raises(ValueError, match=f"{WEIGHTS}: not a readable safetensors file"):
        from_pretrained(path)


BAD_CONFIGS = [
    ("not json {", "not valid JSON"),
    ("\udcff", "not valid JSON"),
    ("[1, 2]", "expected a JSON object .* got a list"),
    ("{}", '"model" must be the name of a preset .* got nothing'),
    ('{"model": 3}', '"model" must be .* got a number'),
    ('{"model": "mnist_mlp", "kwargs": [1]}', '"kwargs" must be an object .* got a list'),
    ('{"model": "mnist_mlp", "kwargs": {}, "weights_sha256": "abc"}', '"weights_sha256" must be 64 hex digits'),
    ('{"model": "no_such_model"}', "cannot build 'no_such_model'.*unknown model"),
    ('{"model": "mnist_mlp", "kwargs": {"bogus": 1}}', "cannot build 'mnist_mlp'.*bogus"),
    ('{"model": "mnist_mlp", "kwargs": {"num_classes": "ten"}}', "cannot build 'mnist_mlp'"),
]


@pytest.mark.parametrize("text, match", BAD_CONFIGS)
def test_an_invalid_config_raises_a_value_error_naming_the_file_and_the_problem(saved, text, match):
    path, _ = saved
    (path / CONFIG).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=f"{CONFIG}: {match}"):
        from_pretrained(path)


def test_a_head_that_does_not_match_the_weights_names_both_files(saved):
    path, _ = saved
    cfg = config_of(path)
    (path / CONFIG).write_text(json.dumps({**cfg, "kwargs": {**cfg["kwargs"], "num_classes": 7}}))
    with pytest.raises(ValueError, match=rf"{WEIGHTS}: does not fit 'mnist_mlp' built from .*{CONFIG}.*head"):
        from_pretrained(path)


def test_a_config_far_too_large_for_its_weights_is_refused_before_anything_is_built(saved, monkeypatch):
    path, _ = saved
    (path / CONFIG).write_text(json.dumps({"model": "vit_h14"}))             # 632M parameters beside 50 kB
    devices = []
    real = registry.create_model

    def spy(name, **kw):
        devices.append(torch.empty(0).device.type)                          # the default device of this build
        return real(name, **kw)

    monkeypatch.setattr(registry, "create_model", spy)
    with pytest.raises(ValueError, match=f"{CONFIG}: the model it describes has .* bytes .*refusing to build it"):
        from_pretrained(path)
    assert devices == ["meta"]


def test_an_interrupted_save_keeps_the_previous_pair(saved, monkeypatch):
    path, old = saved
    new = archzoo.create_model("mnist_mlp", hidden=(16,))

    def crash(*args):
        raise KeyboardInterrupt                           # after the new weights, before the new config

    monkeypatch.setattr(hub, "sha256", crash)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(path)
    monkeypatch.undo()
    assert same_weights(from_pretrained(path), old)
    assert sorted(os.listdir(path.parent)) == ["m"]      # no temporary folder left behind


def test_saving_again_keeps_the_other_files_of_the_folder(saved):
    path, _ = saved
    (path / "notes.txt").write_text("mine")
    (path / "runs").mkdir()
    new = archzoo.create_model("mnist_mlp", hidden=(16,))
    new.save_pretrained(path)
    assert sorted(os.listdir(path)) == [CONFIG, WEIGHTS, "notes.txt", "runs"]
    assert (path / "notes.txt").read_text() == "mine"
    assert same_weights(from_pretrained(path), new)


def test_saving_onto_a_file_is_refused(tmp_path):
    (tmp_path / "m").write_text("a file")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        archzoo.create_model("mnist_mlp", hidden=(16,)).save_pretrained(tmp_path / "m")


def test_from_pretrained_never_unpickles(saved, monkeypatch):
    path, model = saved
    torch.save({"x": torch.zeros(1)}, path / "pytorch_model.bin")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert same_weights(from_pretrained(path), model)
