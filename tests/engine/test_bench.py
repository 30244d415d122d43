"""The bench harness: medians and ratios per size, memory that scales like the tensors, markdown sections."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from archzoo import registry
from archzoo.engine.bench import (
    bench_module,
    format_table,
    loglog_slope,
    method_slopes,
    plot_cost_panels,
    plot_loglog,
    write_section,
)
from archzoo.engine.bench import models as bench


class SquareBuffer(nn.Module):
    """Allocates an (n, n) tensor from an input of length n: memory grows as n^2."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (torch.outer(x, x) * self.scale).sum()


def test_bench_module_gives_positive_medians_per_size_and_a_ratio_to_the_reference():
    rows = bench_module(nn.Linear(8, 8), lambda n: torch.randn(n, 8), [2, 4], repeats=3, warmup=1,
                        reference=lambda n: nn.Linear(8, 8), name="ours", ref_name="ref")
    assert [(r["method"], r["size"]) for r in rows] == [("ours", 2), ("ref", 2), ("ours", 4), ("ref", 4)]
    for r in rows:
        assert math.isfinite(r["time_ms"]) and r["time_ms"] > 0 and r["peak_mb"] > 0
    ours = [r for r in rows if r["method"] == "ours"]
    assert all(math.isclose(o["ratio"], o["time_ms"] / ref["time_ms"]) for o, ref in zip(ours, rows[1::2]))
    assert "| ours | 2 |" in format_table(rows, ["method", "size", "time_ms", "ratio"])


def test_timed_steps_alternate_between_ours_and_the_reference_in_both_orders():
    calls = []

    class Recorder(nn.Linear):
        def __init__(self, tag):
            super().__init__(4, 4)
            self.tag = tag

        def forward(self, x):
            calls.append(self.tag)
            return super().forward(x)

    bench_module(lambda n: Recorder("ours"), lambda n: torch.randn(2, 4), [1], repeats=3, warmup=2,
                 reference=lambda n: Recorder("ref"))
    timed = ["ours", "ref", "ref", "ours", "ours", "ref"]                # in turn, in reverse on alternate rounds
    assert calls == ["ours"] * 2 + ["ref"] * 2 + timed + ["ours", "ref"]   # warm-up, timed, memory


def test_peak_memory_of_an_n_by_n_buffer_grows_quadratically():
    sizes = [64, 128, 256, 512]
    rows = bench_module(lambda n: SquareBuffer(), lambda n: torch.randn(n), sizes, repeats=1, warmup=0)
    assert 1.8 <= loglog_slope(sizes, [r["peak_mb"] for r in rows]) <= 2.2


def test_a_failing_size_records_its_error_and_the_sweep_goes_on():
    rows = bench_module(lambda n: nn.Linear(n, 4), lambda n: torch.randn(2, 8), [8, 3], repeats=1, warmup=0)
    assert "time_ms" in rows[0] and "error" in rows[1] and "time_ms" not in rows[1]


def test_loglog_slope_of_a_square_is_two():
    sizes = [1, 2, 4, 8, 16]
    assert math.isclose(loglog_slope(sizes, [s**2 for s in sizes]), 2.0)
    assert math.isclose(loglog_slope(sizes, [1, 1, 16, 64, 256], min_size=4), 2.0)


def test_plot_loglog_saves_a_png_and_skips_failed_sizes(tmp_path):
    rows = [{"method": m, "size": n, "time_ms": n * k} for m, k in (("a", 1.0), ("b", 2.0)) for n in (1, 2, 4)]
    path = plot_loglog(rows + [{"method": "a", "size": 8, "error": "OOM"}], "time_ms", tmp_path / "t.png", "time")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_pattern_may_join_several_fnmatch_patterns_with_a_bar():
    assert bench.matching_models("resnet50|bit_r50x1") == ["bit_r50x1", "resnet50"]
    assert bench.matching_models("resnet1?") == ["resnet18"]
    assert bench.matching_models(None) == registry.list_models()


def test_write_section_replaces_a_section_in_place_and_keeps_the_others(tmp_path):
    path = tmp_path / "docs" / "benchmarks.md"
    write_section(path, "a", "first A")
    write_section(path, "b", "only B")
    write_section(path, "a", "second A")
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "second A" in text and "first A" not in text and "only B" in text
    assert text.index("<!-- bench:a -->") < text.index("second A") < text.index("<!-- bench:b -->")


def image_cfg(input_size: tuple) -> dict:
    """The pretrained_cfg of a throwaway image-classifier registration."""
    return dict(input_size=input_size, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=2, task="image-classification")


def test_models_suite_measures_image_classifiers_and_skips_others(tmp_path):
    def tiny(**kw):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
        model.default_input_size = (3, 32, 32)
        return model

    modes = []

    class Twin(nn.Sequential):                                # a reference built in eval mode, as transformers' are
        def forward(self, x):
            modes.append(self.training)
            return super().forward(x)

    paper = registry.get_paper("alexnet")
    saved = list(paper.models)
    try:
        registry.register_model("_test_bench_tiny", paper="alexnet", **image_cfg((3, 32, 32)))(tiny)
        registry.register_model("_test_bench_noinput", paper="alexnet", input_size=(2,), num_classes=2,
                                task="sequence-classification")(lambda **kw: nn.Linear(2, 2))
        bench._MODEL_REFERENCES["_test_bench_tiny"] = ("tiny twin", lambda name, **kw: Twin(*tiny()).eval())
        args = SimpleNamespace(device="cpu", repeats=2, warmup=1, quick=True, out=tmp_path / "bench.md",
                               pattern="_test_bench_*", batch_size=None, img_size=None)
        bench.bench_models(args)
    finally:
        paper.models[:] = saved
        for name in ("_test_bench_tiny", "_test_bench_noinput"):
            registry._MODELS.pop(name, None)
        bench._MODEL_REFERENCES.pop("_test_bench_tiny", None)
    text = (tmp_path / "bench.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| _test_bench_tiny | 0.006146 | 2x3x32x32 |"))
    assert "| tiny twin |" in row                            # the reference ran beside ours, with a ratio
    assert modes and all(modes)                              # ... in ours' (training) mode
    assert float(row.strip("|").split("|")[-2]) > 0
    assert "Skipped:\n- `_test_bench_noinput`: not an image classifier (sequence-classification)" in text


def test_a_models_run_stopped_midway_leaves_a_section_that_says_it_is_partial(tmp_path, monkeypatch):
    calls = []

    def measure(name, **kw):
        if calls:
            raise KeyboardInterrupt                           # stopped while the second preset runs
        calls.append(name)
        return {"model": name, "params (M)": 0.1, "input": "2x1x28x28", "steps": 2, "time_ms": 1.0}

    monkeypatch.setattr(bench, "bench_image_model", measure)
    args = SimpleNamespace(device="cpu", repeats=2, warmup=1, quick=True, out=tmp_path / "bench.md",
                           pattern="mnist_mlp|lenet_300_100", batch_size=None, img_size=None)
    with pytest.raises(KeyboardInterrupt):
        bench.bench_models(args)
    text = (tmp_path / "bench.md").read_text()
    assert "**Partial: 1 of the 2 presets measured so far**" in text and f"| {calls[0]} |" in text
    monkeypatch.setattr(bench, "bench_image_model", lambda name, **kw: {"model": name, "note": "skipped"})
    bench.bench_models(args)                                  # a whole run: no partial note
    assert "Partial" not in (tmp_path / "bench.md").read_text()


def test_a_large_model_on_cpu_gets_two_timed_steps(monkeypatch):
    small = bench.bench_image_model("mnist_mlp", batch_size=2, img_size=None, device="cpu", repeats=4, warmup=0)
    monkeypatch.setattr(bench, "LARGE_MODEL_PARAMS", 1000)                  # mnist_mlp (99,710) counts as large
    large = bench.bench_image_model("mnist_mlp", batch_size=2, img_size=None, device="cpu", repeats=4, warmup=0)
    assert (small["steps"], large["steps"]) == (4, 2)
    assert large["time_ms"] > 0


def test_a_large_model_on_cpu_runs_without_its_reference(monkeypatch):
    def tiny(**kw):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
        model.default_input_size = (3, 8, 8)
        return model

    paper = registry.get_paper("alexnet")
    saved = list(paper.models)
    try:
        registry.register_model("_test_bench_large", paper="alexnet", **image_cfg((3, 8, 8)))(tiny)
        bench._MODEL_REFERENCES["_test_bench_large"] = ("tiny twin", lambda name, **kw: tiny())
        with_ref = bench.bench_image_model("_test_bench_large", batch_size=2, img_size=None, device="cpu",
                                            repeats=1, warmup=0)
        monkeypatch.setattr(bench, "LARGE_MODEL_PARAMS", 10)
        without = bench.bench_image_model("_test_bench_large", batch_size=2, img_size=None, device="cpu",
                                           repeats=1, warmup=0)
    finally:
        paper.models[:] = saved
        registry._MODELS.pop("_test_bench_large", None)
        bench._MODEL_REFERENCES.pop("_test_bench_large", None)
    assert with_ref["reference"] == "tiny twin" and with_ref["ref_ms"] > 0
    assert "ref_ms" not in without and without["reference"].startswith("no reference on a CPU above")


def test_models_suite_filters_by_family_into_its_own_section(tmp_path):
    args = SimpleNamespace(device="cpu", repeats=1, warmup=0, quick=True, out=tmp_path / "bench.md",
                           pattern="resnet2*", batch_size=None, img_size=None, family="vision")
    bench.bench_models(args)
    text = (tmp_path / "bench.md").read_text()
    assert "<!-- bench:models-vision -->" in text and "No registered image classifier matches." in text
    args.family = "cnn"
    bench.bench_models(args)
    text = (tmp_path / "bench.md").read_text()
    assert "<!-- bench:models-cnn -->" in text and "| resnet20 |" in text
    args.family = "vison"
    with pytest.raises(ValueError, match="vision"):
        bench.bench_models(args)


def test_method_slopes_and_cost_panels():
    rows = [{"method": m, "size": n, "time_ms": float(n) ** e, "peak_mb": 2.0 * n ** e}
            for m, e in (("linear", 1.0), ("square", 2.0)) for n in (64, 128, 256, 512)]
    slopes = method_slopes(rows)
    assert list(slopes) == ["linear", "square"]
    assert math.isclose(slopes["linear"]["peak_mb"], 1.0) and math.isclose(slopes["square"]["time_ms"], 2.0)
    assert math.isclose(method_slopes(rows, ["square"], keys=("peak_mb",), min_size=128)["square"]["peak_mb"], 2.0)
    fig = plot_cost_panels(rows, slopes, xlabel="n", title="t", guides=(1.5,))
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert labels == ["linear (slope 1.00)", "square (slope 2.00)", "n^1.5"]


def test_models_suite_writes_its_rows_as_it_goes(tmp_path, monkeypatch):
    seen = []

    def measure(name, **kw):
        if seen:                                        # the second preset: the section already holds the first
            assert f"| {seen[0]} |" in (tmp_path / "bench.md").read_text()
        seen.append(name)
        return {"model": name, "params (M)": 1.0, "input": "1x1x1x1", "steps": 1, "time_ms": 1.0}

    monkeypatch.setattr(bench, "bench_image_model", measure)
    bench.bench_models(SimpleNamespace(device="cpu", repeats=1, warmup=0, quick=True, out=tmp_path / "bench.md",
                                 pattern="resnet2*", batch_size=None, img_size=None, family="cnn"))
    assert len(seen) >= 2


def test_a_preset_with_a_batch_limit_runs_at_that_batch_and_the_section_says_why(tmp_path):
    bench.register_batch_limit("lenet_300_100", 1, "a test cap")
    try:
        args = SimpleNamespace(device="cpu", repeats=1, warmup=0, quick=True, out=tmp_path / "bench.md",
                               pattern="mnist_mlp|lenet_300_100", batch_size=3, img_size=None)
        bench.bench_models(args)
    finally:
        bench._BATCH_LIMITS.pop("lenet_300_100")
    text = (tmp_path / "bench.md").read_text()
    rows = {line.split(" | ")[0]: line.split(" | ")[2] for line in text.splitlines() if line.startswith("| ")}
    assert (rows["| lenet_300_100"], rows["| mnist_mlp"]) == ("1x1x32x32", "3x1x32x32")   # capped, and not
    assert "Run at a smaller batch:\n- `lenet_300_100` ran at 1x1x32x32: a test cap" in text
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        bench.register_batch_limit("x", 0, "no")


def test_the_imagenet_perceiver_is_benchmarked_at_batch_1():
    registry.list_papers()
    assert bench.batch_limit("perceiver_imagenet")[0] == 1 and bench.batch_limit("vit_b16") is None


class _DtypeProbe(nn.Module):
    """Records the dtypes of its inputs and of its weight."""

    def __init__(self):
        super().__init__()
        self.linear, self.seen = nn.Linear(4, 2), []

    def forward(self, x, index=None):
        self.seen.append((x.dtype, self.linear.weight.dtype, None if index is None else index.dtype))
        return self.linear(x)


def test_bench_module_casts_module_and_inputs_to_the_dtype():
    probe = _DtypeProbe()
    (row,) = bench_module(probe, lambda _: (torch.randn(3, 4, requires_grad=True), torch.arange(3)), [None],
                          repeats=1, warmup=0, dtype=torch.bfloat16)
    assert "time_ms" in row and set(probe.seen) == {(torch.bfloat16, torch.bfloat16, torch.int64)}  # ints stay
    probe = _DtypeProbe()
    bench_module(probe, lambda _: torch.randn(3, 4), [None], repeats=1, warmup=0)
    assert set(probe.seen) == {(torch.float32, torch.float32, None)}


def test_step_flops_counts_the_matrix_products_of_forward_and_backward_on_the_meta_device():
    from archzoo.engine.bench.flops import step_flops

    with torch.device("meta"):
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    # forward 2 B (12*5 + 5*3); backward: both weight gradients, and the input gradient of the second layer only
    # (the batch does not require grad, so the first layer's input gradient is never formed)
    assert step_flops(model, (4, 3, 2, 2)) == 2 * 4 * (2 * 12 * 5 + 3 * 5 * 3)

    class DataDependent(nn.Module):
        def forward(self, x):
            return x[: int(x.sum().item())]

    assert step_flops(DataDependent(), (4, 3)) is None


def test_peak_tflops_knows_datasheet_gpus_and_no_cpu(monkeypatch):
    from archzoo.engine.bench.flops import peak_tflops

    assert peak_tflops("cpu", torch.bfloat16) is None
    for name, bf16, fp32 in (("NVIDIA H100 80GB HBM3", 989.4, 66.9), ("NVIDIA H100 PCIe", 756.5, 51.2),
                             ("NVIDIA H200", 989.4, 66.9), ("NVIDIA A100-SXM4-40GB", 312.0, 19.5),
                             ("Tesla T4", None, None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert (peak_tflops("cuda", torch.bfloat16), peak_tflops("cuda", torch.float32)) == (bf16, fp32)


def test_models_section_reports_throughput_and_mfu_against_a_given_peak(tmp_path):
    args = SimpleNamespace(device="cpu", repeats=1, warmup=0, quick=True, out=tmp_path / "bench.md",
                           pattern="mnist_mlp", batch_size=None, img_size=None, dtype="bfloat16", peak_tflops=0.5)
    bench.bench_models(args)
    text = (tmp_path / "bench.md").read_text()
    assert "<!-- bench:models-bfloat16 -->" in text and "## Models: cpu, bfloat16" in text
    header, _, row = [line for line in text.splitlines() if line.startswith("|")][:3]
    cells = dict(zip(header.strip("|").split(" | "), row.strip("|").split(" | ")))
    tflops = float(cells["tflop/s"].replace(",", ""))
    assert tflops > 0 and float(cells["mfu"]) == pytest.approx(tflops / 0.5, rel=1e-3)
    images = float(cells["images/s"].replace(",", ""))
    # mnist_mlp at 32 px: 1024 -> 100 -> 100 -> 100 -> 10. Forward 2 m n per image and layer; backward the same for
    # every weight gradient, and for the input gradients of all layers but the first (the batch needs none)
    macs = [1024 * 100, 100 * 100, 100 * 100, 100 * 10]
    flops_per_image = 2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:])
    assert tflops == pytest.approx(images * flops_per_image / 1e12, rel=0.02)
