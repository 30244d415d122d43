"""ViT (Dosovitskiy et al. 2020, arXiv:2010.11929): Eq. 1-8, parameter counts, resolution changes, attention distance,
interfaces, the reference against transformers' ViT, and the claims."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import archzoo
from archzoo.core import FullAttention
from archzoo.engine.train import train
from archzoo.papers.vit import VisionTransformer, ViTAttention, mean_attention_distance, resize_pos_embed


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    cfg = dict(img_size=16, patch_size=4, in_chans=2, num_classes=5, dim=24, depth=2, heads=3)
    model = VisionTransformer(**{**cfg, **kw}).double().eval()
    with torch.no_grad():                      # non-trivial values where the paper's init puts zeros
        model.cls_token.normal_()
        for p in model.head.parameters():
            p.normal_()
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    return model


PRESETS = {   # name: (patch, D, layers, heads, parameters with 1000 classes at 224)
    "vit_ti16": (16, 192, 12, 3, 5_717_416), "vit_s16": (16, 384, 12, 6, 22_050_664),
    "vit_s32": (32, 384, 12, 6, 22_878_952), "vit_b16": (16, 768, 12, 12, 86_567_656),
    "vit_b32": (32, 768, 12, 12, 88_224_232), "vit_l16": (16, 1024, 24, 16, 304_326_632),
    "vit_l32": (32, 1024, 24, 16, 306_535_400), "vit_h14": (14, 1280, 32, 16, 632_045_800),
}


def vit_parameter_count(patch: int, dim: int, layers: int, classes: int = 1000, img: int = 224, chans: int = 3) -> int:
    """Eq. 1-4 counted by hand: E and its bias, x_class, E_pos, L x (2 LN, U_qkv with bias, U_msa, MLP 4D), LN, head."""
    n = (img // patch) ** 2
    block = 2 * 2 * dim + 3 * (dim * dim + dim) + (dim * dim + dim) + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    embeddings = (patch * patch * chans * dim + dim) + dim + (n + 1) * dim          # E, x_class, E_pos
    return embeddings + layers * block + 2 * dim + (dim * classes + classes)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_have_table1_shapes_and_exact_parameter_counts(name):
    patch, dim, layers, heads, count = PRESETS[name]
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert (model.patch_size, model.dim, model.depth, model.heads, model.mlp_dim) == ((patch, patch), dim, layers,
                                                                                      heads, 4 * dim)
    assert n_params(model) == count == vit_parameter_count(patch, dim, layers)


def test_table1_millions_are_the_truncated_counts_of_b16_and_h14():
    with torch.device("meta"):
        counts = {n: n_params(archzoo.create_model(n)) for n in ("vit_b16", "vit_h14")}
    assert counts["vit_b16"] // 10**6 == 86 and counts["vit_h14"] // 10**6 == 632          # Table 1: 86M, 632M


def test_overrides_change_classes_channels_and_resolution():
    with torch.device("meta"):
        model = archzoo.create_model("vit_b16", num_classes=10, img_size=384, in_chans=1)
    assert model.default_input_size == (1, 384, 384) and model.pos_embed.weight.shape == (1 + 24 * 24, 768)
    assert n_params(model) == vit_parameter_count(16, 768, 12, classes=10, img=384, chans=1)


def test_vit_attention_equals_torch_multihead_attention_eq5_8():
    torch.manual_seed(0)
    attn = ViTAttention(dim=12, heads=3, dim_head=4).double()
    for p in attn.parameters():                               # non-zero biases everywhere
        torch.nn.init.normal_(p)
    ref = torch.nn.MultiheadAttention(12, 3, bias=True, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]))
        ref.out_proj.weight.copy_(attn.to_out.weight), ref.out_proj.bias.copy_(attn.to_out.bias)
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    expected, weights = ref(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(attn(x), expected)
    torch.testing.assert_close(attn.attention_weights(x), weights)              # A of Eq. 6, per head


def test_without_qkv_bias_vit_attention_is_core_full_attention():
    torch.manual_seed(0)
    attn, full = ViTAttention(16, heads=2, dim_head=8, qkv_bias=False).double(), FullAttention(16, 2, 8).double()
    full.load_state_dict(attn.state_dict())                                      # strict: the same parameters
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(attn(x), full(x), rtol=0, atol=0)
    assert n_params(ViTAttention(16, 2, 8)) - n_params(attn) == 3 * 16                # the q, k, v biases


def test_forward_is_eq1_to_eq4_written_out():
    model = tiny_vit()
    x = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    patches = rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=4, p2=4)  # x_p, (B, N, P^2 C)
    e = rearrange(model.patch_embed.proj.weight, "d c p1 p2 -> (c p1 p2) d")     # E, (P^2 C, D)
    z = torch.cat([model.cls_token.expand(2, -1, -1), patches @ e + model.patch_embed.proj.bias], dim=1)
    z = z + model.pos_embed.weight                                               # Eq. 1
    for block in model.encoder.blocks:
        ln = lambda t, norm: F.layer_norm(t, (24,), norm.weight, norm.bias, eps=1e-6)  # noqa: E731
        z = block.attn(ln(z, block.norm1)) + z                                   # Eq. 2
        h = F.gelu(F.linear(ln(z, block.norm2), block.ff.fc1.weight, block.ff.fc1.bias))
        z = F.linear(h, block.ff.fc2.weight, block.ff.fc2.bias) + z              # Eq. 3
    y = F.layer_norm(z[:, 0], (24,), model.encoder.norm.weight, model.encoder.norm.bias, eps=1e-6)   # Eq. 4
    torch.testing.assert_close(model(x), model.head(y))


def test_without_position_embeddings_vit_is_blind_to_the_order_of_patches():
    # Sec. 3.1 "Inductive bias": only the patch cutting and E_pos know the 2D layout. With E_pos = 0, shuffling whole
    # patches leaves the output unchanged; with E_pos it does not.
    model = tiny_vit()
    x = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    patches = rearrange(x, "b c (h p1) (w p2) -> b (h w) c p1 p2", p1=4, p2=4)
    shuffled = rearrange(patches[:, perm], "b (h w) c p1 p2 -> b c (h p1) (w p2)", h=4)
    assert not torch.allclose(model(x), model(shuffled))
    with torch.no_grad():
        model.pos_embed.weight.zero_()
    torch.testing.assert_close(model(x), model(shuffled))


def test_initialization_follows_the_paper():
    model = VisionTransformer(img_size=32, patch_size=8, num_classes=7, dim=64, depth=2, heads=4)
    assert torch.count_nonzero(model.cls_token) == 0
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) == 0   # Sec. 3.2
    assert 0.015 < model.pos_embed.weight.std() < 0.025                          # N(0, 0.02^2)
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    fc1 = model.encoder.blocks[0].ff.fc1                          # Xavier uniform: |w| <= sqrt(6 / (in + out))
    assert fc1.weight.abs().max() <= math.sqrt(6 / (64 + 256)) and torch.count_nonzero(fc1.bias) == 0


def test_resize_pos_embed_keeps_the_class_token_and_the_2d_layout():
    grid = torch.arange(4, dtype=torch.float64)[:, None, None].expand(4, 4, 3)   # varies along rows only
    pos = torch.cat([torch.full((1, 3), 7.0, dtype=torch.float64), rearrange(grid, "h w d -> (h w) d")])
    new = resize_pos_embed(pos, (6, 8))
    assert new.shape == (1 + 48, 3)
    torch.testing.assert_close(new[0], pos[0])                                  # x_class has no location
    rows = rearrange(new[1:], "(h w) d -> h w d", h=6)
    torch.testing.assert_close(rows, rows[:, :1].expand(6, 8, 3))                # still constant along each row
    assert (rows[1:, 0, 0] > rows[:-1, 0, 0]).all()                              # and increasing down the columns
    const = torch.ones(1 + 49, 5, dtype=torch.float64)
    torch.testing.assert_close(resize_pos_embed(const, 12), torch.ones(1 + 144, 5, dtype=torch.float64))
    assert resize_pos_embed(pos, 4) is pos                                       # same grid: nothing to do


def test_resize_pos_embed_is_bicubic_interpolation_on_the_grid():
    torch.manual_seed(0)
    pos = torch.randn(1 + 3 * 5, 4, dtype=torch.float64)
    new = resize_pos_embed(pos, (6, 10), old_grid=(3, 5))
    img = rearrange(pos[1:], "(h w) d -> 1 d h w", h=3)
    expected = F.interpolate(img, size=(6, 10), mode="bicubic", align_corners=False)
    torch.testing.assert_close(new[1:], rearrange(expected, "1 d h w -> (h w) d"))
    with pytest.raises(ValueError, match="not a square grid"):
        resize_pos_embed(pos, 6)


def test_weights_of_another_resolution_load_with_resized_position_embeddings(tmp_path):
    small = archzoo.create_model("vit_ti16", img_size=32, num_classes=3)
    big = archzoo.create_model("vit_ti16", img_size=64, num_classes=3)
    big.load_state_dict(small.state_dict())                                      # strict, 2x2 -> 4x4 grid
    torch.testing.assert_close(big.pos_embed.weight, resize_pos_embed(small.pos_embed.weight, 4))
    torch.testing.assert_close(big.encoder.blocks[3].attn.to_q.weight, small.encoder.blocks[3].attn.to_q.weight)
    small.save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path, img_size=64).eval()              # fine-tuning at a higher resolution
    assert loaded.default_input_size == (3, 64, 64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), big.eval()(x), rtol=0, atol=0)


def test_mean_attention_distance_is_zero_for_self_attention_and_analytic_for_uniform():
    grid, n = (2, 2), 1 + 4
    eye = torch.eye(n).expand(3, 2, n, n)                                        # every token attends to itself
    torch.testing.assert_close(mean_attention_distance(eye, grid, 4), torch.zeros(2, dtype=torch.float64))
    uniform = torch.full((3, 2, n, n), 1 / n)
    # from any patch of a 2x2 grid of 4-pixel patches: distances 0, 4, 4, 4 sqrt(2) -> mean 2 + sqrt(2)
    torch.testing.assert_close(mean_attention_distance(uniform, grid, 4), torch.full((2,), 2 + math.sqrt(2),
                                                                                      dtype=torch.float64))
    on_cls = uniform.clone()
    on_cls[..., 0] = 0.9                                                         # weight on the class token is ignored
    torch.testing.assert_close(mean_attention_distance(on_cls, grid, 4), mean_attention_distance(uniform, grid, 4))


def test_mean_attention_distance_separates_heads():
    grid, n = (3, 3), 1 + 9
    attn = torch.zeros(1, 2, n, n)
    attn[0, 0] = torch.eye(n)                                                    # head 1: local
    attn[0, 1, :, 1] = 1.0                                                       # head 2: all look at patch (0, 0)
    d = mean_attention_distance(attn, grid, 7)
    corner = torch.tensor([0, 1, 2, 1, 2 ** 0.5, 5 ** 0.5, 2, 5 ** 0.5, 8 ** 0.5], dtype=torch.float64) * 7
    torch.testing.assert_close(d, torch.stack([torch.tensor(0.0, dtype=torch.float64), corner.mean()]))


def test_attention_maps_are_each_layers_softmax_on_its_normalized_input():
    model = tiny_vit()
    x = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 3, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 3, 17, dtype=torch.float64))
    block = model.encoder.blocks[0]
    expected = block.attn.attention_weights(block.norm1(model.embed(x)))
    torch.testing.assert_close(maps[0], expected)
    second = model.encoder.blocks[1]
    torch.testing.assert_close(maps[1], second.attn.attention_weights(second.norm1(block(model.embed(x)))))


def test_bad_configuration_raises_a_value_error():
    with pytest.raises(ValueError, match="divisible by heads"):
        VisionTransformer(img_size=32, patch_size=4, dim=30, heads=4)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        VisionTransformer(img_size=30, patch_size=4, dim=32, heads=4)


def test_pre_logits_head_adds_a_tanh_hidden_layer():
    model = VisionTransformer(img_size=16, patch_size=4, num_classes=5, dim=24, depth=1, heads=2,
                              representation_size=32).eval()
    x = torch.rand(2, 3, 16, 16)
    y = model.forward_head(model.forward_features(x), pre_logits=True)
    assert y.shape == (2, 32) and y.abs().max() < 1                              # tanh range
    base = VisionTransformer(img_size=16, patch_size=4, num_classes=5, dim=24, depth=1, heads=2)
    assert n_params(model) - n_params(base) == (24 * 32 + 32) + (32 - 24) * 5


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=4, dim=32, depth=2, heads=4)
    data = torch.utils.data.TensorDataset(torch.rand(16, 1, 16, 16), torch.randint(0, 4, (16,)))
    result = train(model, data, steps=40, batch_size=16, lr=3e-3, progress=False)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_every_preset_and_the_attention_are_registered_under_the_paper():
    assert set(archzoo.get_paper("vit").models) == set(PRESETS)
    assert archzoo.registry.get_attention("vit") is ViTAttention
    encoder = archzoo.Transformer(dim=16, depth=1, heads=2, dim_head=8, attention="vit")
    assert encoder.blocks[0].attn.to_q.bias is not None


# ----------------------------------------------------------------------------- reference: transformers' ViT

HF_KEYS = {                                     # ours -> transformers' ViTForImageClassification
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed.weight": "vit.embeddings.position_embeddings",
    "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
    "encoder.norm.weight": "vit.layernorm.weight", "encoder.norm.bias": "vit.layernorm.bias",
    "head.weight": "classifier.weight", "head.bias": "classifier.bias",
}
HF_BLOCK_KEYS = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.to_q": "attention.q_proj",
                 "attn.to_k": "attention.k_proj", "attn.to_v": "attention.v_proj", "attn.to_out": "attention.o_proj",
                 "ff.fc1": "mlp.fc1", "ff.fc2": "mlp.fc2"}


def hf_key(ours: str) -> str:
    if ours in HF_KEYS:
        return HF_KEYS[ours]
    _, _, layer, rest = ours.split(".", 3)                                       # encoder.blocks.<i>.<module>.<param>
    module, param = rest.rsplit(".", 1)
    return f"vit.layers.{layer}.{HF_BLOCK_KEYS[module]}.{param}"


def load_hf_weights(model: VisionTransformer, hf) -> None:
    theirs = hf.state_dict()
    model.load_state_dict({k: theirs[hf_key(k)].squeeze(0) if k == "pos_embed.weight" else theirs[hf_key(k)]
                           for k in model.state_dict()})                        # E_pos: (1, 1 + N, D) there


@pytest.mark.reference
def test_key_mapping_covers_transformers_vit_b16_one_to_one():
    pytest.importorskip("transformers")
    from archzoo.papers.vit.reference import hf_vit

    with torch.device("meta"):
        hf, ours = hf_vit("vit_b16"), archzoo.create_model("vit_b16")
    theirs = hf.state_dict()
    mapped = {hf_key(k): v.shape for k, v in ours.state_dict().items()}
    assert set(mapped) == set(theirs)
    assert all(theirs[k].numel() == math.prod(s) for k, s in mapped.items())
    assert n_params(hf) == n_params(ours) == 86_567_656


@pytest.mark.reference
def test_logits_match_transformers_vit_at_the_b16_width():
    pytest.importorskip("transformers")
    from archzoo.papers.vit.reference import hf_vit

    hf = hf_vit("vit_b16", depth=2, num_classes=10)                             # B/16 width at 224, two layers
    ours = archzoo.create_model("vit_b16", depth=2, num_classes=10).eval()
    load_hf_weights(ours, hf)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.reference
def test_resized_position_embeddings_match_transformers_interpolation():
    pytest.importorskip("transformers")
    from archzoo.papers.vit.reference import hf_vit

    hf = hf_vit("vit_ti16", img_size=32, depth=1, num_classes=3)                # 2x2 grid ...
    ours = archzoo.create_model("vit_ti16", img_size=64, depth=1, num_classes=3).eval()   # ... loaded at 4x4
    load_hf_weights(ours, hf)                     # the pre-hook resizes E_pos bicubically
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x, interpolate_pos_encoding=True).logits,
                                   rtol=1e-5, atol=1e-5)
