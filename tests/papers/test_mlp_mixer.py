"""MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601): Eq. 1, weight sharing, mixing only through the token MLP,
parameter counts of Table 1, interfaces and the claims."""

import math

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.mlp_mixer import MixerLayer, MlpMixer


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def zero_(mlp: torch.nn.Module) -> None:
    """Zero an MLP's output layer: the branch then adds nothing, and its skip connection passes the input."""
    torch.nn.init.zeros_(mlp.fc2.weight)
    torch.nn.init.zeros_(mlp.fc2.bias)


@pytest.mark.parametrize("name, count, table1", [
    ("mixer_s32", 19_104_624, 19), ("mixer_s16", 18_528_264, 18), ("mixer_b32", 60_293_428, 60),
    ("mixer_b16", 59_880_472, 59), ("mixer_l32", 206_939_264, 206), ("mixer_l16", 208_196_168, 207),
    ("mixer_h14", 432_350_952, 431),
])
def test_presets_have_table1_parameter_counts(name, count, table1):
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert n_params(model) == count
    assert model.default_input_size == (3, 224, 224) and model.num_classes == 1000
    assert round((count - n_params(model.head)) / 1e6) == table1      # Table 1 counts the net without its head


def test_b16_count_follows_from_table1_sizes():
    s, c, d_s, d_c, n, p = 196, 768, 384, 3072, 12, 16
    layer = 2 * 2 * c + (s * d_s + d_s + d_s * s + s) + (c * d_c + d_c + d_c * c + c)   # 2 LNs, token, channel MLP
    assert (p * p * 3 * c + c) + n * layer + 2 * c + (c * 1000 + 1000) == 59_880_472
    assert n_params(MixerLayer(s, c, d_s, d_c)) == layer


def test_mixer_layer_is_eq1_in_float64():
    torch.manual_seed(0)
    s, c, d_s, d_c = 5, 6, 7, 9
    layer = MixerLayer(s, c, d_s, d_c).double()
    for ln in (layer.norm1, layer.norm2):                              # non-trivial LayerNorm affine
        ln.weight.data.uniform_(0.5, 2), ln.bias.data.uniform_(-1, 1)
    x = torch.randn(3, s, c, dtype=torch.float64)

    def layer_norm(t, ln):                                             # over the channels of each patch
        mu, var = t.mean(-1, keepdim=True), t.var(-1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias

    gelu = lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))      # noqa: E731
    tok, ch = layer.token_mixing, layer.channel_mixing
    w1, b1, w2, b2 = tok.fc1.weight, tok.fc1.bias, tok.fc2.weight, tok.fc2.bias    # (D_S, S), (S, D_S)
    w3, b3, w4, b4 = ch.fc1.weight, ch.fc1.bias, ch.fc2.weight, ch.fc2.bias        # (D_C, C), (C, D_C)
    u = torch.empty_like(x)
    for i in range(c):                                                 # U_{*,i} = X_{*,i} + W_2 s(W_1 LN(X)_{*,i})
        u[:, :, i] = x[:, :, i] + gelu(layer_norm(x, layer.norm1)[:, :, i] @ w1.T + b1) @ w2.T + b2
    y = torch.empty_like(x)
    for j in range(s):                                                 # Y_{j,*} = U_{j,*} + W_4 s(W_3 LN(U)_{j,*})
        y[:, j] = u[:, j] + gelu(layer_norm(u, layer.norm2)[:, j] @ w3.T + b3) @ w4.T + b4
    torch.testing.assert_close(layer(x), y)


def test_token_mixing_is_shared_across_channels():
    # With the channel MLP silenced, the layer is the token-mixing MLP applied to every channel alike: permuting
    # channels permutes its output. The full layer (channel MLP on) is not channel-permutation equivariant.
    torch.manual_seed(0)
    layer = MixerLayer(6, 8, 5, 16).double()
    x, perm = torch.randn(2, 6, 8, dtype=torch.float64), torch.randperm(8)
    assert not torch.allclose(layer(x[..., perm]), layer(x)[..., perm])
    zero_(layer.channel_mixing)
    torch.testing.assert_close(layer(x[..., perm]), layer(x)[..., perm])


def test_channel_mixing_is_shared_across_patches():
    torch.manual_seed(0)
    layer = MixerLayer(6, 8, 5, 16).double()
    x, perm = torch.randn(2, 6, 8, dtype=torch.float64), torch.randperm(6)
    assert not torch.allclose(layer(x[:, perm]), layer(x)[:, perm])
    zero_(layer.token_mixing)
    torch.testing.assert_close(layer(x[:, perm]), layer(x)[:, perm])


def test_patches_mix_only_through_the_token_mlp():
    # Changing one patch of the image changes every patch's features; with the token MLPs zeroed it changes only
    # that patch's: the Mixer is then a per-patch function before pooling.
    torch.manual_seed(0)
    model = MlpMixer(img_size=12, patch_size=4, in_chans=1, num_classes=3, dim=8, depth=2, token_mlp_dim=6,
                     channel_mlp_dim=16).double().eval()
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 4:8, 0:4] += 1.0                                           # patch 3 of the 3 x 3 grid (row-major)
    others = [k for k in range(9) if k != 3]
    changed = (model.forward_features(x2) - model.forward_features(x)).abs().amax(-1)[0]   # (S,)
    assert (changed[others] > 1e-6).all()
    for layer in model.layers:
        zero_(layer.token_mixing)
    changed = (model.forward_features(x2) - model.forward_features(x)).abs().amax(-1)[0]
    assert changed[3] > 1e-6 and torch.equal(changed[others], torch.zeros(8, dtype=torch.float64))


def test_without_token_mixing_the_logits_ignore_where_the_patches_are():
    torch.manual_seed(0)
    model = MlpMixer(img_size=8, patch_size=4, in_chans=1, num_classes=3, dim=8, depth=2, token_mlp_dim=6,
                     channel_mlp_dim=16).double().eval()
    torch.nn.init.normal_(model.head.weight)                           # the head is zero-initialized
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    swapped = torch.cat([x[..., 4:, :], x[..., :4, :]], dim=-2)       # top and bottom patch rows exchanged
    assert not torch.allclose(model(swapped), model(x))
    for layer in model.layers:
        zero_(layer.token_mixing)
    torch.testing.assert_close(model(swapped), model(x))              # a bag of patches, then global average pooling


def test_forward_is_global_average_pooling_then_head():
    torch.manual_seed(0)
    model = archzoo.create_model("mixer_s16", img_size=32, num_classes=7, depth=1).eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 4, 512)
    torch.testing.assert_close(model(x), model.head(features.mean(1)))
    model.reset_classifier(0)
    assert model(x).shape == (2, 512) and model.num_classes == 0


def test_mixer_layer_rejects_a_table_of_another_size():
    with pytest.raises(ValueError, match=r"S=4, C=8.*\(2, 5, 8\)"):
        MixerLayer(4, 8, 3, 16)(torch.randn(2, 5, 8))


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = MlpMixer(img_size=16, patch_size=4, in_chans=1, num_classes=4, dim=16, depth=2, token_mlp_dim=8,
                     channel_mlp_dim=32)
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert F.cross_entropy(model(x), y).item() < 0.5 * first


def test_quick_claim_on_the_8px_digits_fallback_takes_a_patch_size_that_divides_them(quick_claim):
    record = quick_claim("mlp_mixer", "on_par_with_vit")                 # fallback data (tests/conftest.py)
    assert record["substitutes"] == {"fashion-mnist": "digits"} and record["metrics"]["patch_size"] == 4


def test_quick_claim_trains_each_net_at_the_best_rate_of_its_own_sweep(quick_claim):
    metrics = quick_claim("mlp_mixer", "on_par_with_vit")["metrics"]
    for net, sweep in metrics["val_accuracy"].items():
        assert float(metrics["best_lr"][net]) == float(max(sweep, key=sweep.get))
    # the quick Mixer sweeps two rates, so its best is at an end of the sweep; a single rate is not a sweep
    assert metrics["best_lr_at_sweep_edge"] == {"mixer": True, "vit": False}
