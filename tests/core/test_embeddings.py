import math

import pytest
import torch
import torch.nn.functional as F

from archzoo.core import (
    LearnedPositionalEmbedding,
    PatchEmbed,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
    sincos_2d,
)


def test_token_embedding_is_nn_embedding_for_ids_of_any_integer_dtype():
    torch.manual_seed(0)
    emb = TokenEmbedding(256, 4)
    ids = torch.tensor([[0, 7, 255], [3, 3, 128]])
    expected = F.embedding(ids, emb.weight)
    for dtype in (torch.int64, torch.int32, torch.uint8):
        torch.testing.assert_close(emb(ids.to(dtype)), expected)
    assert list(emb.state_dict()) == list(torch.nn.Embedding(256, 4).state_dict())     # loads old checkpoints


@pytest.mark.parametrize("ids, message", [
    (torch.tensor([[1, 2, 10]]), r"must be in \[0, 10\) \(vocab_size=10\), got min id 1 and max id 10"),
    (torch.tensor([[-4, 2, 12]]), r"got min id -4 and max id 12"),
    (torch.tensor([[1.0, 2.0]]), r"expected integer token ids in \[0, 10\), got torch.float32"),
    (torch.tensor([[True]]), r"got torch.bool"),
])
def test_token_embedding_rejects_ids_outside_the_vocabulary_naming_them(ids, message):
    with pytest.raises(ValueError, match=message):
        TokenEmbedding(10, 4)(ids)


def test_token_embedding_of_no_ids_is_empty():
    assert TokenEmbedding(10, 4)(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3, 4)


def test_learned_embedding_adds_one_vector_per_position():
    emb = LearnedPositionalEmbedding(8, 4)
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(emb(x) - x, emb.weight[:5].expand(2, 5, 4))


def test_learned_embedding_rejects_sequences_over_max_len():
    with pytest.raises(ValueError, match="N=9 exceeds max_len=8"):
        LearnedPositionalEmbedding(8, 4)(torch.zeros(1, 9, 4))


def test_sinusoidal_embedding_matches_the_formula():
    dim, emb = 6, SinusoidalPositionalEmbedding(6, max_len=50)
    pe = emb(torch.zeros(1, 50, dim))[0]
    for pos in (0, 1, 17, 49):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_embedding_errors():
    with pytest.raises(ValueError, match="even dim"):
        SinusoidalPositionalEmbedding(5)
    with pytest.raises(ValueError, match="N=11 exceeds max_len=10"):
        SinusoidalPositionalEmbedding(4, max_len=10)(torch.zeros(1, 11, 4))


def test_sincos_2d_at_known_positions():
    h, w, dim = 3, 5, 8
    pe = sincos_2d(h, w, dim)
    assert pe.shape == (h * w, dim)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))         # sin 0 = 0, cos 0 = 1
    omega = torch.tensor([1.0, 1e-4])                         # 10000^(-i / (dim/4 - 1)), i = 0, 1
    r, c = 2, 3                                               # row y = 2, column x = 3, index r * w + c
    expected = torch.cat(((c * omega).sin(), (c * omega).cos(), (r * omega).sin(), (r * omega).cos()))
    torch.testing.assert_close(pe[r * w + c], expected)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


def test_patch_embed_is_a_linear_map_of_flattened_patches():
    torch.manual_seed(0)
    embed = PatchEmbed(img_size=8, patch_size=4, in_chans=3, dim=5).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)          # (B, N, C*p*p), row-major patches
    expected = patches @ embed.proj.weight.reshape(5, -1).T + embed.proj.bias
    torch.testing.assert_close(embed(x), expected)
    assert embed.num_patches == 4 and embed.grid_size == (2, 2)


def test_patch_embed_accepts_other_sizes_divisible_by_the_patch():
    embed = PatchEmbed(img_size=8, patch_size=4, in_chans=1, dim=5)
    assert embed(torch.zeros(1, 1, 12, 8)).shape == (1, 6, 5)
    assert PatchEmbed(8, 4, 1, 5, flatten=False)(torch.zeros(1, 1, 8, 8)).shape == (1, 5, 2, 2)


def test_patch_embed_rejects_bad_inputs():
    embed = PatchEmbed(img_size=8, patch_size=4, in_chans=3, dim=5)
    with pytest.raises(ValueError, match=r"expected shape \(B, C=3, H, W\), got \(1, 1, 8, 8\)"):
        embed(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"divisible by the patch size \(4, 4\).*got shape \(1, 3, 10, 8\)"):
        embed(torch.zeros(1, 3, 10, 8))
    with pytest.raises(ValueError, match="img_size"):
        PatchEmbed(img_size=10, patch_size=4)
