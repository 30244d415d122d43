"""FNO in `archzoo bench science`: forward+backward of our FNO against neuraloperator's `FNO` (pip `neuraloperator`)
computing the same function (weights copied, `neuralop_fno`), and against the CNN of the claims (same size, a
5-point convolution in place of each spectral convolution), on batches of 20 functions across resolutions.

Both FNOs use ReLU here: with its channel MLP off (the paper's layer), neuraloperator applies the activation twice
per layer, which changes GELU but not ReLU, so only with ReLU do the two compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from ...engine.bench import bench_module, format_table, register_family_bench
from .models import FNO, fno1d_burgers, fno2d_darcy, fno_cnn_baseline

BATCH = 20
SIZES = {1: ((64, 256), (64, 256, 1024, 4096)), 2: ((32,), (64, 128))}      # (quick, full) grid sides


def neuralop_fno(ours: FNO) -> nn.Module:
    """neuraloperator's FNO in our layout, with our weights: grid embedding, linear lifting P, no channel MLP,
    linear skips W, projection Q with the same hidden width, ReLU. Its spectral weights keep `2 m - 1` modes along
    the real-FFT axis (n // 2 + 1 = m of them) and `2 m` along the first axis of a 2-D grid, in fftshift order."""
    from neuralop.models import FNO as ReferenceFNO

    m = ours.modes
    ref = ReferenceFNO(n_modes=(2 * m - 1,) if ours.dim == 1 else (2 * m, 2 * m - 1), in_channels=ours.in_channels,
                       out_channels=ours.out_channels, hidden_channels=ours.width, n_layers=len(ours.layers),
                       lifting_channel_ratio=0, projection_channel_ratio=ours.project[0].out_channels / ours.width,
                       positional_embedding="grid", non_linearity=nn.functional.relu, use_channel_mlp=False,
                       fno_skip="linear")
    if ours.lift.weight.dtype == torch.float64:
        ref = ref.double()                                 # real parameters only; the complex ones are set below

    def put(target: torch.Tensor, source: torch.Tensor) -> None:   # its pointwise layers are Conv1d at any dim
        target.copy_(source.reshape(target.shape))

    with torch.no_grad():
        put(ref.lifting.fcs[0].weight, ours.lift.weight)
        put(ref.lifting.fcs[0].bias, ours.lift.bias)
        for layer, conv, skip in zip(ours.layers, ref.fno_blocks.convs, ref.fno_blocks.fno_skips, strict=True):
            k = layer.integral
            weight = (torch.view_as_complex(k.weight) if ours.dim == 1 else
                      torch.cat([torch.view_as_complex(k.weight_neg), torch.view_as_complex(k.weight_pos)], dim=2))
            conv.weight.tensor.data = weight.clone()       # complex64 or complex128, as ours
            put(conv.bias, layer.w.bias)                   # our W's bias is the bias of the layer
            put(skip.conv.weight, layer.w.weight)
        for i, j in ((0, 0), (1, 2)):
            put(ref.projection.fcs[i].weight, ours.project[j].weight)
            put(ref.projection.fcs[i].bias, ours.project[j].bias)
    return ref


def _ours(dim: int) -> FNO:
    return fno1d_burgers(activation="relu") if dim == 1 else fno2d_darcy(padding=0, activation="relu")


def bench_fno(opts) -> str:
    sections = []
    for dim in (1, 2):
        sizes = SIZES[dim][0 if opts.quick else 1]
        ours = _ours(dim)
        inputs = (lambda n: torch.randn(BATCH, 1, n)) if dim == 1 else (lambda n: torch.randn(BATCH, 1, n, n))
        kw = dict(device=opts.device, repeats=opts.repeats, warmup=opts.warmup)
        try:
            reference, ref_name = neuralop_fno(ours), "neuraloperator FNO"
        except ImportError:
            reference, ref_name = None, "neuraloperator FNO (not installed)"
        rows = bench_module(ours, inputs, sizes, reference=reference, name="ours", ref_name=ref_name, **kw)
        if dim == 1:
            rows += bench_module(fno_cnn_baseline(), inputs, sizes, name="CNN (534k)", **kw)
        rows.sort(key=lambda r: r["size"])
        title = "FNO-1d (width 64, 16 modes)" if dim == 1 else "FNO-2d (width 32, 12 modes, no padding)"
        sections.append(f"{title}, batch {BATCH}; size = grid points per axis:\n\n"
                        + format_table(rows, ["method", "size", "time_ms", "peak_mb", "ratio"]))
    return "\n".join(["### fno: Fourier neural operator",
                      "Forward+backward of our FNO against neuraloperator's FNO with the same weights (ratio = ours / "
                      "neuraloperator; <= 1 is the target) and against the same-size CNN of the claims.", *sections])


register_family_bench("science", "fno", bench_fno)
