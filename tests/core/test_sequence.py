import pytest
import torch

from archzoo.core import SequenceTransformer, token_accuracy
from archzoo.data import load_dataset
from archzoo.engine.train import fit_and_eval


def test_causal_model_ignores_future_tokens():
    torch.manual_seed(0)
    model = SequenceTransformer(20, 20, dim=32, depth=2, heads=2, dim_head=16, max_len=16, causal=True).eval()
    ids = torch.randint(0, 20, (2, 16))
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 20
    out, out_changed = model(ids), model(changed)
    assert torch.allclose(out[:, :10], out_changed[:, :10], atol=1e-5)
    assert not torch.allclose(out[:, 10:], out_changed[:, 10:], atol=1e-3)


def test_pooled_classifier_ignores_padding():
    torch.manual_seed(0)
    model = SequenceTransformer(10, 3, dim=32, depth=1, max_len=12, per_token=False, pad_id=0).eval()
    ids = torch.randint(1, 10, (2, 8))
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    assert model(padded).shape == (2, 3)
    # learned positions differ by position only, so padding on the right leaves the real tokens' states unchanged
    assert torch.allclose(model(ids), model(padded), atol=1e-5)


def test_bad_input():
    model = SequenceTransformer(10, 3, max_len=8)
    with pytest.raises(ValueError, match="ids"):
        model(torch.randn(2, 8))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="positional"):
        SequenceTransformer(10, 3, positional="rotary")


def test_a_sequence_classifier_needs_a_token_and_a_per_token_model_maps_none_to_none():
    pooled = SequenceTransformer(10, 3, dim=16, depth=1, max_len=8, per_token=False)
    with pytest.raises(ValueError, match=r"at least one token, got shape \(2, 0\)"):
        pooled(torch.zeros(2, 0, dtype=torch.long))              # mean over no token: NaN before
    per_token = SequenceTransformer(10, 3, dim=16, depth=1, max_len=8, causal=True)
    assert per_token(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 3)
    assert pooled(torch.zeros(0, 5, dtype=torch.long)).shape == (0, 3)


def test_learns_the_copy_task():
    task = load_dataset("copy", length=9, n_train=2000, n_test=200, seed=0)
    torch.manual_seed(0)
    model = SequenceTransformer(task.vocab_size, task.num_classes, dim=64, depth=2, max_len=9)
    before = token_accuracy(model, task.test)
    fit_and_eval(model, task, steps=300, batch_size=64, lr=3e-3, progress=False)
    after = token_accuracy(model, task.test)
    assert before["accuracy"] < 30
    assert after["accuracy"] > 50                     # chance is 1/10: the positions route the symbols
    assert after["sequence_accuracy"] > before["sequence_accuracy"]
