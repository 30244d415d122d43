from types import SimpleNamespace

import pytest
import torch

from archzoo.core import FullAttention
from archzoo.engine.bench.attention import (
    AttentionBenchSpec,
    attention_bench_specs,
    bench_attention,
    bench_attention_rows,
    bench_tasks,
    build_attention,
    majority_accuracy,
    register_attention_bench,
)


def _args(tmp_path, pattern):
    return SimpleNamespace(quick=True, repeats=2, warmup=1, device="cpu", pattern=pattern,
                           out=tmp_path / "benchmarks.md", length=None)


def test_full_attention_is_registered_first():
    specs = attention_bench_specs()
    assert next(iter(specs)) == "full"
    assert isinstance(build_attention("full", 128, dim=32, heads=2, dim_head=16), FullAttention)


def test_reference_needs_a_name():
    with pytest.raises(ValueError, match="ref_name"):
        register_attention_bench("full", reference=lambda n, d, h, dh: FullAttention(d, h, dh))


class _FailingReference(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("reference out of memory")


def test_only_our_row_stops_the_size_sweep():
    spec = AttentionBenchSpec("full", lambda n: {}, reference=lambda n, d, h, dh: _FailingReference(),
                              ref_name="failing")
    rows, note = bench_attention_rows(spec, [32, 64, 128], dim=32, heads=2, dim_head=16, device="cpu",
                                      repeats=1, warmup=0, max_ms=float("inf"))
    assert note is None
    assert [r["size"] for r in rows if r["method"] == "full" and "time_ms" in r] == [32, 64, 128]
    assert [r["size"] for r in rows if r["method"] == "failing" and "error" in r] == [32, 64, 128]


def test_attention_suite_limited_by_a_pattern_writes_a_section_of_its_own(tmp_path):
    from archzoo.engine.bench import write_section

    write_section(tmp_path / "benchmarks.md", "attention", "every method, an earlier run")
    bench_attention(_args(tmp_path, "full"))
    text = (tmp_path / "benchmarks.md").read_text()
    assert "every method, an earlier run" in text                     # the table of every method is kept
    section = text[text.index("<!-- bench:attention-full -->"):text.index("<!-- /bench:attention-full -->")]
    assert "## Attention: `full` only" in section
    assert "| full | 256 |" in section and "| full | 512 |" in section


def test_task_suite_trains_and_tabulates(tmp_path):
    torch.manual_seed(0)
    bench_tasks(_args(tmp_path, "full"))
    text = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- bench:tasks -->" in text
    row = next(line for line in text.splitlines() if line.startswith("| full |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 6 and all(0.0 <= float(c) <= 100.0 for c in cells[1:])
    chance = next(line for line in text.splitlines() if line.startswith("| majority class |"))
    assert all(0.0 < float(c) < 100.0 for c in chance.strip("|").split("|")[1:])


def test_majority_accuracy_predicts_the_most_frequent_training_label():
    from torch.utils.data import TensorDataset

    train = TensorDataset(torch.zeros(4, 3), torch.tensor([[2, 2, -100], [2, 1, -100], [1, 2, 0], [2, -100, -100]]))
    test = TensorDataset(torch.zeros(2, 3), torch.tensor([[2, 1, -100], [0, 2, 2]]))
    assert majority_accuracy(SimpleNamespace(train=train, test=test)) == pytest.approx(100.0 * 3 / 5)


def test_compare_attentions_gives_each_attention_its_best_rate_on_validation():
    from archzoo.engine.bench import compare_attentions
    from archzoo.engine.claims import ClaimContext

    cfg = SimpleNamespace(task="copy", length=8, n_train=64, n_val=32, n_test=32, steps=30, batch_size=16,
                          lrs=(0.0, 1e-2), seeds=2)
    result = compare_attentions(ClaimContext(progress=False), cfg, {"full": ("full", None)})
    sweep = result["lr_sweep_val_accuracy"]["full"]
    assert sweep[1e-2] > sweep[0.0]                                 # lr 0 learns nothing; 30 steps at 1e-2 do
    assert result["lr"] == {"full": 1e-2}
    assert len(result["accuracy_per_seed"]["full"]) == 2
    assert result["accuracy"]["full"] == pytest.approx(sum(result["accuracy_per_seed"]["full"]) / 2)


def test_the_reference_of_full_attention_is_full_attention_without_its_checks():
    from archzoo.engine.bench.attention import SDPALayer

    torch.manual_seed(0)
    ours, ref = FullAttention(32, heads=2, dim_head=16), SDPALayer(32, 2, 16)
    ref.load_state_dict(ours.state_dict())                            # the same parameter names
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(ref(x), ours(x))


def test_a_bfloat16_run_writes_its_own_section_in_that_dtype(tmp_path):
    from archzoo.engine.bench import write_section

    write_section(tmp_path / "benchmarks.md", "attention-full", "the float32 run")
    bench_attention(SimpleNamespace(**vars(_args(tmp_path, "full")), dtype="bfloat16"))
    text = (tmp_path / "benchmarks.md").read_text()
    assert "the float32 run" in text
    section = text[text.index("<!-- bench:attention-full-bfloat16 -->"):]
    assert "## Attention: `full` only: cpu, bfloat16" in section and "on `cpu` in bfloat16" in section
    assert "--device cpu --dtype bfloat16" in section and "| SDPA layer (flash kernel" in section
