"""Benchmarks: forward+backward time and peak memory, measured the same way for every module.

    rows = bench_module(lambda n: Linformer(64, seq_len=n), lambda n: (torch.randn(2, n, 64),),
                        sizes=[256, 512, 1024], reference=lambda n: FullAttention(64), name="linformer",
                        ref_name="full")
    print(format_table(rows, ["method", "size", "time_ms", "peak_mb", "ratio"]))
    method_slopes(rows)        # {"linformer": {"time_ms": ~1, "peak_mb": ~1}, "full": {...}}

- `measure`: one module's time (median over repeats) and peak memory (`bench_module`, `peak_memory`);
- `analysis`: log-log slopes (the empirical exponent of a cost) and the cost plots;
- `markdown`: tables and the sections of `docs/benchmarks.md` that each suite owns;
- the suites run by `archzoo bench <name>`: one per family whose papers register parts with
  `register_family_bench` (`science`, `moe`, ...), `models`, `norms` (papers register their layer pairs with
  `register_norm_bench`), `attention` and `tasks` (papers register with `register_attention_bench`);
- `tuned`: attentions compared on a generated task, each at its own swept learning rate (claims of Linformer and
  BigBird).
"""

from .analysis import loglog_slope, method_slopes, plot_cost_panels, plot_loglog
from .attention import AttentionBenchSpec, attention_bench_specs, build_attention, register_attention_bench
from .family import BenchOptions, family_parts, register_family_bench, run_family_bench
from .markdown import default_benchmarks_path, format_table, load_note, load_now, write_section
from .measure import LiveTensorBytes, MiB, bench_module, peak_memory, time_step
from .models import (
    LARGE_MODEL_PARAMS,
    batch_limit,
    bench_image_model,
    model_reference,
    preset_on_meta,
    register_batch_limit,
    register_model_reference,
)
from .norms import layer_pairs, register_norm_bench
from .tuned import compare_attentions, plot_comparison

__all__ = [
    "bench_module", "peak_memory", "time_step", "LiveTensorBytes", "MiB",
    "loglog_slope", "method_slopes", "plot_cost_panels", "plot_loglog",
    "format_table", "write_section", "load_note", "load_now", "default_benchmarks_path",
    "register_model_reference", "model_reference", "preset_on_meta", "bench_image_model", "LARGE_MODEL_PARAMS",
    "register_batch_limit", "batch_limit",
    "register_norm_bench", "layer_pairs",
    "register_family_bench", "run_family_bench", "family_parts", "BenchOptions",
    "register_attention_bench", "attention_bench_specs", "build_attention", "AttentionBenchSpec",
    "compare_attentions", "plot_comparison",
]
