import numpy as np
import pytest
import torch

from archzoo.data import (
    IGNORE_INDEX,
    evaluate_listops,
    load_dataset,
    make_associative_recall,
    make_copy,
    make_duplication,
    make_listops,
    make_retrieval,
)
from archzoo.data.tasks import LISTOPS_VOCAB


def test_copy_targets_are_the_symbols_before_the_separator():
    x, y = make_copy(16, 21, seed=0)
    m = 10
    assert (x[:, m] == 1).all() and (x[:, m + 1:] == 0).all() and (x[:, :m] >= 2).all()
    np.testing.assert_array_equal(y[:, m + 1:], x[:, :m])
    assert (y[:, :m + 1] == IGNORE_INDEX).all()


def test_duplication_second_half_repeats_the_first_and_only_it_is_scored():
    x, y = make_duplication(16, 64, seed=0, num_symbols=128)
    h = 32
    np.testing.assert_array_equal(x[:, h:], x[:, :h])
    assert (x[:, 0] == 0).all() and (x[:, 1:h] >= 1).all() and (x[:, 1:h] <= 128).all()
    np.testing.assert_array_equal(y[:, h:-1], x[:, h + 1:])        # next-token targets on the second half
    assert (y[:, :h] == IGNORE_INDEX).all() and (y[:, -1] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="even"):
        make_duplication(2, 63)


@pytest.mark.parametrize("length", [9, 10])
def test_associative_recall_answer_is_the_value_paired_with_the_query(length):
    x, y = make_associative_recall(200, length, seed=0, num_keys=4, num_values=5)
    for seq, answer in zip(x, y):
        pairs = seq[len(seq) - 1 - 2 * ((length - 1) // 2):-1].reshape(-1, 2)
        assert (pairs[:, 0] <= 4).all() and (pairs[:, 1] > 4).all()
        values = pairs[pairs[:, 0] == seq[-1], 1]
        assert len(values) >= 1 and (values == answer).all()


@pytest.mark.parametrize("expr, value", [
    ("7", 7),
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MIN 4 7 ]", 4),
    ("[SM 5 6 7 ]", 8),
    ("[MED 1 9 3 ]", 3),
    ("[MED 1 2 3 4 ]", 2),                                     # median 2.5 rounds down, as int(np.median)
    ("[MIN [MAX 1 [SM 9 9 ] ] 5 ]", 5),                        # SM 18 -> 8, MAX 8, MIN(8, 5)
    ("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]", 5),         # the example of the LRA paper
])
def test_listops_evaluator_on_hand_checked_expressions(expr, value):
    assert evaluate_listops(expr) == value


@pytest.mark.parametrize("expr", ["[MAX 1 2", "[MAX ]", "1 2", "]", "[FOO 1 ]"])
def test_listops_evaluator_rejects_malformed_expressions(expr):
    with pytest.raises(ValueError):
        evaluate_listops(expr)


def test_listops_labels_are_the_value_of_the_tokenized_expression():
    x, y = make_listops(30, 128, seed=0)
    assert x.shape == (30, 128) and (x[:, 0] >= 11).all()           # every expression starts with an operator
    for seq, label in zip(x, y):
        assert evaluate_listops(seq) == label
        text = " ".join(LISTOPS_VOCAB[i] for i in seq if i)
        assert evaluate_listops(text) == label and text.count("[") == text.count("]")


def test_retrieval_label_says_whether_the_documents_share_the_motif():
    k = 6
    x, y = make_retrieval(100, 81, seed=0, num_symbols=16, motif_len=k)
    assert 20 < y.sum() < 80 and (x[:, 40] == 1).all()

    def grams(doc):
        return {tuple(doc[i:i + k]) for i in range(len(doc) - k + 1)}

    shared = [bool(grams(seq[:40]) & grams(seq[41:])) for seq in x]
    np.testing.assert_array_equal(shared, y.astype(bool))


@pytest.mark.parametrize("name", ["copy", "duplication", "associative_recall", "listops", "retrieval"])
def test_tasks_are_deterministic_by_seed_and_follow_the_contract(name):
    a = load_dataset(name, length=256, n_train=12, n_test=4, seed=1)
    b = load_dataset(name, length=256, n_train=12, n_test=4, seed=1)
    c = load_dataset(name, length=256, n_train=12, n_test=4, seed=2)
    x, y = a.train.tensors
    assert x.shape == (12, 256) and x.dtype == y.dtype == torch.int64 and len(a.test) == 4
    assert torch.equal(x, b.train.tensors[0]) and torch.equal(y, b.train.tensors[1])
    assert not torch.equal(x, c.train.tensors[0])
    assert 0 <= x.min() and x.max() < a.vocab_size and a.ignore_index == IGNORE_INDEX
    if a.per_token:
        assert y.shape == x.shape and y[y != IGNORE_INDEX].max() < a.num_classes
    else:
        assert y.shape == (12,) and 0 <= y.min() and y.max() < a.num_classes


@pytest.mark.parametrize("name", ["copy", "duplication", "associative_recall", "retrieval"])
def test_long_sequences_generate(name):
    task = load_dataset(name, length=4096, n_train=4, n_test=2)
    assert task.train.tensors[0].shape == (4, 4096)


def test_task_arguments_reach_the_generator_and_unknown_ones_are_refused():
    task = load_dataset("copy", length=32, n_train=4, n_test=2, num_symbols=3)
    assert task.vocab_size == 5 and task.train.tensors[0].max() <= 4
    with pytest.raises(ValueError, match=r"copy takes no option\(s\) \['num_symbol'\]; it takes .*num_symbols"):
        load_dataset("copy", length=32, num_symbol=3)
