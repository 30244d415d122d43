"""Direct Feedback Alignment (Launay et al. 2020, arXiv:2006.12878; Nøkland 2016): the DFA update equals
(B_i e) * f'(a_i) h_{i-1}^T by hand (Eq. 3), no backpropagated gradient reaches a hidden layer, the output layer
keeps its true gradient, the feedback matrices stay fixed and survive a resume, the Transformer's blocks learn
from their own feedback only, the alignment angle, the presets and the claims."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import archzoo
from archzoo.engine.trainer import Trainer
from archzoo.papers.dfa import (
    DFAMLP,
    AlignmentMonitor,
    DirectFeedbackAlignment,
    alignment_angles,
    angle_degrees,
    feedback_layers,
)


def tiny_mlp(seed=0, hidden=(5, 4)):
    """A float64 DFAMLP on 1x2x2 images with 3 classes, under DFA (feedback seed 1)."""
    torch.manual_seed(seed)
    model = DFAMLP(num_classes=3, img_size=2, hidden=hidden).double()
    points, output, _ = feedback_layers(model)
    return model, DirectFeedbackAlignment(points, output, seed=1)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_dfa_update_equals_feedback_times_derivative_times_input_eq3():
    model, dfa = tiny_mlp()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        hs = [x.flatten(1)]                                                  # h_0
        for block in model.blocks:
            hs.append(block(hs[-1]))                                         # h_i = tanh(a_i)
        e = (F.softmax(model.head(hs[-1]), -1) - F.one_hot(y, 3)) / len(x)  # dL/dy_hat, mean cross-entropy
    for i, block in enumerate(model.blocks):
        delta_a = (e @ dfa.feedback[i].double().T) * (1 - hs[i + 1] ** 2)   # (B_i e) * f'(a_i), tanh' = 1 - h^2
        torch.testing.assert_close(block[0].weight.grad, delta_a.T @ hs[i])  # delta a_i h_{i-1}^T
        torch.testing.assert_close(block[0].bias.grad, delta_a.sum(0))
    torch.testing.assert_close(model.head.weight.grad, e.T @ hs[-1])        # the output layer: its true gradient


def test_no_backpropagated_gradient_reaches_the_hidden_layers():
    """Change every weight above the first hidden layer: its DFA update (for the same output error e) does not
    move, while its backpropagated gradient does."""
    a, dfa_a = tiny_mlp(seed=0)
    b, dfa_b = tiny_mlp(seed=5)
    b.blocks[0].load_state_dict(a.blocks[0].state_dict())                  # same first layer, different above
    x, _ = batch()
    e = torch.randn(len(x), 3, dtype=torch.float64)
    grads = {}
    for name, model, dfa in (("a", a, dfa_a), ("b", b, dfa_b)):
        model(x).backward(e)
        grads[name, "dfa"] = model.blocks[0][0].weight.grad.clone()
        model.zero_grad()
        with dfa.backprop():
            model(x).backward(e)
        grads[name, "bp"] = model.blocks[0][0].weight.grad.clone()
    torch.testing.assert_close(grads["a", "dfa"], grads["b", "dfa"])
    assert not torch.allclose(grads["a", "bp"], grads["b", "bp"])


def test_hidden_outputs_reach_the_next_layer_detached():
    model, _ = tiny_mlp()
    seen = []
    model.blocks[1].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model(batch()[0])
    assert [h.grad_fn for h in seen] == [None, None] and not any(h.requires_grad for h in seen)


def test_output_layer_gradient_equals_backpropagation():
    model, dfa = tiny_mlp()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    dfa_grads = [p.grad.clone() for p in model.head.parameters()]
    model.zero_grad()
    with dfa.backprop():
        F.cross_entropy(model(x), y).backward()
    for g, p in zip(dfa_grads, model.head.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_dfa_with_the_transposed_output_weights_as_feedback_is_backpropagation():
    """One hidden layer with B_1 = W_out^T: B_1 e is the backpropagated error, so DFA equals BP (angle 0)."""
    model, dfa = tiny_mlp(hidden=(5,))
    x, y = batch()
    model(x)                                                                 # draws B_1
    dfa.feedback[0] = model.head.weight.detach().T.clone()
    angles = alignment_angles(model, dfa, (x, y), feedback_layers(model)[2])
    assert angles["layer1"] == pytest.approx(0.0, abs=1e-5) and angles["output"] == pytest.approx(0.0, abs=1e-5)


def test_forward_values_are_unchanged_by_dfa():
    torch.manual_seed(0)
    model = DFAMLP(num_classes=3, img_size=2, hidden=(5, 4)).double()
    x = batch()[0]
    before = model(x)
    DirectFeedbackAlignment(*feedback_layers(model)[:2])
    torch.testing.assert_close(model(x), before)


def test_removed_hooks_give_backpropagation_again():
    model, dfa = tiny_mlp()
    torch.manual_seed(0)
    plain = DFAMLP(num_classes=3, img_size=2, hidden=(5, 4)).double()       # the same weights, never hooked
    x, y = batch()
    dfa.remove()
    for net in (model, plain):
        F.cross_entropy(net(x), y).backward()
    torch.testing.assert_close(model.blocks[0][0].weight.grad, plain.blocks[0][0].weight.grad)


def test_transformer_block_learns_from_its_own_feedback_only():
    """Macro DFA (Sec. 3.4): block i's gradient is the backpropagation of B_i e through block i alone; the
    embedding learns from block 1's feedback, backpropagated through block 1."""
    torch.manual_seed(0)
    model = archzoo.create_model("dfa_char_transformer", vocab_size=11, dim=16, depth=2, heads=2, dim_head=8,
                                 max_len=8).double()
    points, output, _ = feedback_layers(model)
    dfa = DirectFeedbackAlignment(points, output)
    ids = torch.randint(0, 11, (3, 8))
    e = torch.randn(3, 8, 11, dtype=torch.float64)
    model(ids).backward(e)
    first, second = model.transformer.blocks
    with torch.no_grad():
        h1 = first(model.pos(model.embed(ids)), causal=True)
    params = list(second.parameters())
    with dfa.backprop():                                                     # the blocks alone, hooks off
        expected = torch.autograd.grad(second(h1, causal=True), params, grad_outputs=dfa.feedback_signal(1, e))
        embedding = torch.autograd.grad(first(model.pos(model.embed(ids)), causal=True), model.embed.weight,
                                        grad_outputs=dfa.feedback_signal(0, e))
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g)
    torch.testing.assert_close(model.embed.weight.grad, embedding[0])


def trainer(tmp_path, seed, steps=4, resume=False):
    torch.manual_seed(0)
    model = DFAMLP(num_classes=3, img_size=2, hidden=(5, 4))
    dfa = DirectFeedbackAlignment(*feedback_layers(model)[:2], seed=seed)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 2, 2, generator=g), torch.randint(0, 3, (64,), generator=g))
    t = Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), steps=steps, data=data, batch_size=8,
                hooks=[dfa], checkpoint_dir=tmp_path, checkpoint_every=2, progress=False)
    return t, dfa


def test_feedback_matrices_stay_fixed_and_survive_checkpoint_and_resume(tmp_path):
    full, dfa = trainer(tmp_path / "full", seed=0)
    full.models["model"](torch.zeros(1, 1, 2, 2))                           # draw the matrices before training
    initial = {i: b.clone() for i, b in dfa.feedback.items()}
    full.fit()
    for i, b in initial.items():
        torch.testing.assert_close(dfa.feedback[i], b, rtol=0, atol=0)
    half, _ = trainer(tmp_path / "resumed", seed=0, steps=2)
    half.fit()
    resumed, other = trainer(tmp_path / "resumed", seed=123)                # another seed: matrices must come back
    resumed.fit(resume=True)
    for i, b in initial.items():
        torch.testing.assert_close(other.feedback[i], b, rtol=0, atol=0)
    for p, q in zip(full.models["model"].parameters(), resumed.models["model"].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_dfa_lowers_the_loss_on_a_fixed_batch(fixed_batch_losses):
    model, _ = tiny_mlp(hidden=(16, 16))
    x, y = batch(32)
    losses = fixed_batch_losses(lambda: F.cross_entropy(model(x), y), torch.optim.Adam(model.parameters(), 1e-2), 60)
    assert losses[-1] < 0.6 * losses[0]


def test_alignment_monitor_records_every_layer(tmp_path):
    t, dfa = trainer(tmp_path, seed=0)
    monitor = AlignmentMonitor(dfa, feedback_layers(t.models["model"])[2], batch=(torch.randn(8, 1, 2, 2),
                               torch.randint(0, 3, (8,))), every=2)
    t.hooks.append(monitor)
    t.fit()
    assert [h["step"] for h in monitor.history] == [0, 2, 4]
    assert set(monitor.history[0]) == {"step", "layer1", "layer2", "output"}
    assert all(0 <= h["layer1"] <= 180 and h["output"] < 1e-3 for h in monitor.history)


def test_angle_degrees():
    a = torch.tensor([1.0, 2.0, -1.0])
    assert angle_degrees(a, 3 * a) == pytest.approx(0.0, abs=1e-6)
    assert angle_degrees(a, -a) == pytest.approx(180.0)
    assert angle_degrees(a, torch.tensor([2.0, -1.0, 0.0])) == pytest.approx(90.0)
    assert angle_degrees(a, torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(math.degrees(math.acos(1 / 6 ** 0.5)))


def test_bad_configurations_raise():
    model = DFAMLP(num_classes=3, img_size=2, hidden=(5,))
    with pytest.raises(ValueError, match="at least one feedback point"):
        DirectFeedbackAlignment([], model.head)
    with pytest.raises(ValueError, match="cannot also be a feedback point"):
        DirectFeedbackAlignment([model.head], model.head)
    twice = DirectFeedbackAlignment([model.blocks[0][1]], model.head)
    model.blocks[0][1].register_forward_hook(lambda m, a, out: m(out))      # the point runs a second time
    with pytest.raises(ValueError, match="ran twice"):
        model(torch.randn(2, 1, 2, 2))
    twice.remove()
    with pytest.raises(TypeError, match="DFAMLP and SequenceTransformer"):
        feedback_layers(torch.nn.Linear(2, 2))


def test_feedback_matrix_of_another_shape_is_refused():
    model, dfa = tiny_mlp()
    dfa.feedback[0] = torch.zeros(7, 3)
    with pytest.raises(ValueError, match=r"expected \(5, 3\)"):
        model(batch()[0])


@pytest.mark.parametrize("name, count", [("dfa_mlp_7x240", 537_850), ("dfa_mlp_2x800", 1_276_810),
                                         ("dfa_char_transformer", 834_407)])
def test_preset_parameter_counts(name, count):
    model = archzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def test_quick_claims_compare_the_three_methods_and_record_every_layer(quick_claim):
    for name, key in (("mlp_trains", "test_accuracy"), ("transformer_trains", "test_loss")):
        metrics = quick_claim("dfa", name)["metrics"]
        assert set(metrics[key]) == set(metrics["best_lr"]) == {"dfa", "backprop", "output_only"}
    angles = quick_claim("dfa", "gradient_alignment")["metrics"]["angles"]
    assert [h["step"] for h in angles["mlp"]] == [0, 10, 20]
    assert [h["step"] for h in angles["transformer"]] == [0, 5, 10]
    assert set(angles["transformer"][0]) == {"step", "embedding", "block1", "block2"}
