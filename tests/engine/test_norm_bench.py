from types import SimpleNamespace

from archzoo.engine.bench.norms import bench_norms, layer_pairs


def test_every_pair_computes_a_same_shaped_output():
    import torch

    x = torch.randn(2, 32, 6, 6)
    for pair in layer_pairs():
        assert pair.make_ours(32)(x).shape == pair.make_counterpart(32)(x).shape == x.shape, pair.ours


def test_quick_suite_writes_both_tables(tmp_path):
    out = tmp_path / "benchmarks.md"
    bench_norms(SimpleNamespace(quick=True, repeats=2, warmup=1, device="cpu", pattern="resnet20_gn", out=out))
    text = out.read_text()
    assert "<!-- bench:norms -->" in text
    assert "| GroupNorm G=32 (group_norm) | nn.GroupNorm | 2x32x8x8 |" in text
    assert "| resnet20_gn | 0.2697 | 2x3x32x32 | 2 |" in text
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if "x32x8x8" in line}
    assert float(rows["GroupNorm G=32 (group_norm)"][6]) > 0          # written_out_ms: it has a reference_forward
    assert rows["LocalResponseNorm n=5 (alexnet)"][6] == ""           # ... and alexnet's LRN has a single form
