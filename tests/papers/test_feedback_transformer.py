"""Feedback Transformer (Fan et al. 2020, arXiv:2002.09402): causality, decoding with the cache against the
teacher-forced pass and against Eq. 4-5 written out, the memory mix, shared K/V, the preset and a loss that falls."""

import math

import pytest
import torch

import archzoo
from archzoo.engine.train import train
from archzoo.papers.feedback_transformer import FeedbackTransformer
from archzoo.papers.feedback_transformer.claims import running_parity


def model(depth=2, **kw) -> FeedbackTransformer:
    torch.manual_seed(0)
    net = FeedbackTransformer(7, 5, dim=16, depth=depth, heads=2, dim_head=8, max_len=32, **kw).double()
    with torch.no_grad():                                 # nonzero position bias and mix, so both are exercised
        for p in (net.layer_weights, *(layer.position_bias for layer in net.layers)):
            p.normal_()
    return net


def reference(net: FeedbackTransformer, ids):
    """Eq. 4-5 written out without a cache: at every step the K/V of all past memories (the last `span` of them)
    are recomputed."""
    b, n = ids.shape
    memories, logits = [], []
    for t in range(n):
        x = net.embed(ids[:, t])
        outputs = [x]
        for layer in net.layers:
            h = layer.norm1(x)
            first = max(0, t - net.span) if net.span else 0
            sources = [net.memory_norm(m) for m in memories[first:]] + [h]          # [m_1..m_{t-1}, x_t^{l-1}]
            out = []
            for head in range(net.heads):
                sl = slice(head * net.dim_head, (head + 1) * net.dim_head)
                q = layer.to_q(h)[:, sl]
                scores = torch.stack([(q * net.to_k(s)[:, sl]).sum(-1) / math.sqrt(net.dim_head)
                                      + layer.position_bias[head, t - first - j] for j, s in enumerate(sources)], -1)
                w = scores.softmax(-1)
                out.append(sum(w[:, j:j + 1] * net.to_v(s)[:, sl] for j, s in enumerate(sources)))
            x = x + layer.to_out(torch.cat(out, -1))
            x = x + layer.ff(layer.norm2(x))
            outputs.append(x)
        mix = net.layer_weights.softmax(0)
        memories.append(sum(mix[i] * o for i, o in enumerate(outputs)))             # Eq. 5
        logits.append(net.head(net.norm(x)))
    return torch.stack(logits, 1), torch.stack(memories, 1)


@pytest.mark.parametrize("span", [None, 1, 3])
def test_teacher_forced_pass_equals_eq_4_5_without_a_cache(span):
    net, ids = model(span=span), torch.randint(0, 7, (3, 9))
    with torch.no_grad():
        logits, memories = net(ids), net.memories(ids)
        ref_logits, ref_memories = reference(net, ids)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-10)
    torch.testing.assert_close(memories, ref_memories, rtol=0, atol=1e-10)


@pytest.mark.parametrize("span", [None, 4])
def test_step_by_step_decoding_with_the_cache_equals_the_forward(span):
    net, ids = model(span=span), torch.randint(0, 7, (2, 12))
    with torch.no_grad():
        full = net(ids)
        state, steps = None, []
        for t in range(12):
            y, state = net.step(ids[:, t], state)
            steps.append(y)
    assert state.keys.shape == (2, 2, span or 12, 8)               # one K per cached memory and head, span at most
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-10)


def test_causal_changing_token_t_plus_1_never_changes_outputs_up_to_t():
    net, ids = model(), torch.randint(0, 7, (2, 10))
    for t in (0, 4, 8):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 7
        with torch.no_grad():
            a, b = net(ids), net(changed)
        assert torch.equal(a[:, :t + 1], b[:, :t + 1])
        assert (a[:, t + 1] - b[:, t + 1]).abs().max() > 1e-6                        # the change is seen at t + 1


def first_layer_at_step_1(net, ids):
    """x_1^1: the bottom layer's output at the second step, after the first step's memory is cached."""
    _, state = net.step(ids[:, 0])
    return net.layers[0](net.embed(ids[:, 1]), state, net.to_k, net.to_v)


def test_the_top_of_step_t_reaches_the_bottom_of_step_t_plus_1():
    """The feedback itself: with the mix on the top layer (w = (-inf, -inf, 0)) the bottom layer at step 1 changes
    when the top layer changes; with the mix on the embedding alone the memories are the embeddings and it does not."""
    net, ids = model(), torch.randint(0, 7, (2, 4))
    changed = {}
    with torch.no_grad():
        for name, w in (("top", [-1e4, -1e4, 0.0]), ("embedding", [0.0, -1e4, -1e4])):
            net.layer_weights.copy_(torch.tensor(w))
            before = first_layer_at_step_1(net, ids)
            net.layers[1].to_out.weight.mul_(2.0)
            changed[name] = float((first_layer_at_step_1(net, ids) - before).abs().max())
            net.layers[1].to_out.weight.div_(2.0)
        net.layer_weights.copy_(torch.tensor([0.0, -1e4, -1e4]))
        torch.testing.assert_close(net.memories(ids), net.embed(ids), rtol=0, atol=1e-10)
    assert changed["top"] > 1e-3 and changed["embedding"] == 0.0


def test_with_one_layer_the_memory_is_the_mix_of_eq_5_and_that_layers_output_when_w_picks_it():
    net, ids = model(depth=1), torch.randint(0, 7, (2, 6))
    with torch.no_grad():
        net.layer_weights.copy_(torch.tensor([-1e4, 0.0]))                           # softmax(w) = (0, 1)
        memories = net.memories(ids)
        top = []                                                                     # x_t^1, the layer's output
        state = net.initial_state(2)
        for t in range(6):
            x = net.layers[0](net.embed(ids[:, t]), state, net.to_k, net.to_v)
            top.append(x)
            _, state = net.step(ids[:, t], state)
    torch.testing.assert_close(memories, torch.stack(top, 1), rtol=0, atol=1e-10)


def test_one_key_value_projection_pair_shared_by_all_layers():
    for depth in (1, 2, 4):
        net = model(depth=depth)
        kv = [n for n, _ in net.named_parameters() if n.rsplit(".", 1)[0].endswith(("to_k", "to_v"))]
        assert kv == ["to_k.weight", "to_v.weight"]
    per_layer = sum(p.numel() for p in model(depth=1).layers[0].parameters())
    assert (sum(p.numel() for p in model(depth=3).parameters()) - sum(p.numel() for p in model(depth=1).parameters())
            == 2 * per_layer + 2)                                                    # + 2 mix weights w, no K/V


def test_preset_count():
    net = archzoo.create_model("feedback_transformer_tiny")
    # embed 3*32; K, V 2*32*32; per layer: 2 LN 128 + W^Q 1024 + W^O 1056 + MLP 32*128+128+128*32+32 + bias 4*64;
    # mix 3; memory and final LN 128; head 66
    per_layer = 128 + 1024 + 1056 + (4096 + 128 + 4096 + 32) + 256
    assert sum(p.numel() for p in net.parameters()) == 96 + 2048 + 2 * per_layer + 3 + 128 + 66 == 23_973


def test_bad_input_is_a_value_error():
    net = model()
    with pytest.raises(ValueError, match="max_len"):
        net(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="span"):
        model(span=0)
    with pytest.raises(ValueError, match="token ids"):
        net(torch.full((1, 3), 7))


def test_a_loss_that_falls():
    torch.manual_seed(0)
    net = FeedbackTransformer(3, 2, dim=16, depth=1, heads=2, dim_head=8, max_len=16)
    x = torch.randint(1, 3, (64, 8))
    y = ((x - 1).cumsum(1) % 2)                                                       # running parity
    data = torch.utils.data.TensorDataset(x, y)
    history = train(net, data, steps=60, batch_size=32, lr=1e-2, progress=False).history
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]


def test_running_parity_is_the_parity_of_every_prefix():
    x, y = running_parity(50, 9, seed=3).tensors
    assert set(x.unique().tolist()) <= {1, 2}
    for i in range(50):
        for t in range(9):
            assert y[i, t] == int((x[i, :t + 1] == 2).sum()) % 2
    assert torch.equal(running_parity(50, 9, seed=3).tensors[0], x)                 # seeded


def test_quick_state_tracking_claim_runs_and_reports_both_models(quick_claim):
    record = quick_claim("feedback_transformer", "state_tracking")
    m = record["metrics"]
    assert set(m["last_accuracy"]) == {"feedback", "transformer"}
    assert m["params"]["feedback"] < m["params"]["transformer"]                        # K/V shared, no positions
