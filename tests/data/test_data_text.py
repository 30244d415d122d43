import pytest
import torch

from archzoo.data import CharTokenizer, TextData, load_dataset


def test_tokenizer_round_trips_and_its_vocabulary_is_the_sorted_characters():
    tok = CharTokenizer("hello, world")
    assert tok.chars == sorted(set("hello, world")) and tok.vocab_size == 9
    ids = tok.encode("low, hell")
    assert ids.dtype == torch.int64
    assert tok.decode(ids) == "low, hell"
    assert tok.encode("dehl").tolist() == [2, 3, 4, 5]          # vocabulary " ,dehlorw"


def test_tokenizer_names_an_unknown_character():
    with pytest.raises(ValueError, match="'z'"):
        CharTokenizer("abc").encode("abz")


def test_windows_are_next_character_pairs():
    data = TextData("t", torch.arange(100), torch.arange(20), CharTokenizer("ab"))
    w = data.windows("train", block_size=8)
    assert len(w) == 12                                           # non-overlapping: (100 - 9) // 8 + 1
    for i in (0, 5, len(w) - 1):
        x, y = w[i]
        assert torch.equal(y[:-1], x[1:]) and torch.equal(x, torch.arange(8 * i, 8 * i + 8)) and y[-1] == x[-1] + 1
    strided = data.windows("val", block_size=8, stride=2)
    assert len(strided) == 6 and torch.equal(strided[5][0], torch.arange(10, 18))
    with pytest.raises(IndexError):
        w[len(w)]


def test_pydoc_text_splits_90_10_and_decodes_back():
    from pydoc_data.topics import topics

    data = load_dataset("pydoc")
    text = "".join(topics[k] for k in sorted(topics))
    assert len(data.train) + len(data.val) == len(text)
    assert abs(len(data.val) / len(text) - 0.1) < 1e-3
    assert data.tokenizer.decode(data.train[:500]) == text[:500]


def test_any_text_file_loads_by_path(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("abcdefghij" * 10, encoding="utf-8")
    data = load_dataset(str(path))
    assert data.name == "poem" and data.tokenizer.vocab_size == 10
    assert len(data.train) == 90 and data.tokenizer.decode(data.val) == "abcdefghij"


def test_an_empty_text_file_names_itself(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty.txt: the text file is empty"):
        load_dataset(tmp_path / "empty.txt")
