"""Model FLOPs of one training step, and model FLOPs utilisation (MFU): achieved FLOP/s over the device's peak.

    flops = step_flops(preset_on_meta("vit_b16"), (8, 3, 224, 224))     # 8.4e11 (forward + backward)
    mfu = flops / (time_ms / 1e3) / (peak_tflops(device, torch.bfloat16) * 1e12)

The FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (2 m n k per matrix product, convolutions
and attention kernels likewise; elementwise ops are not counted, as in the usual MFU) on a model built on the
meta device, so counting costs no compute and no memory whatever the model's size. The peaks are the dense
(no sparsity) figures of the vendors' datasheets for the data type; on a CPU, or a GPU not listed, there is no
peak and no MFU unless one is given (`archzoo bench models --peak-tflops`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# (name fragment as in torch.cuda.get_device_name, dtype) -> dense peak TFLOP/s; the first fragment that matches wins
PEAK_TFLOPS: dict[tuple[str, torch.dtype], float] = {
    **{("H200", d): 989.4 for d in (torch.bfloat16, torch.float16)}, ("H200", torch.float32): 66.9,
    **{("H100 PCIe", d): 756.5 for d in (torch.bfloat16, torch.float16)}, ("H100 PCIe", torch.float32): 51.2,
    **{("H100", d): 989.4 for d in (torch.bfloat16, torch.float16)}, ("H100", torch.float32): 66.9,   # SXM
    **{("A100", d): 312.0 for d in (torch.bfloat16, torch.float16)}, ("A100", torch.float32): 19.5,
}


def step_flops(model_on_meta: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """FLOPs of one forward + backward of `model_on_meta` (built on the meta device) on a batch of `input_shape`;
    None when the model does not run on the meta device (an op with a data-dependent shape, e.g. the adaptive ODE
    solver of `odenet_mnist`): the count is an extra column, so no failure of it may stop a benchmark."""
    x = torch.empty(input_shape, device="meta")
    try:
        with FlopCounterMode(display=False) as counter:
            out = model_on_meta(x)
            (out if isinstance(out, torch.Tensor) else out[0]).float().sum().backward()
    except Exception:
        return None
    return counter.get_total_flops()


def peak_tflops(device: torch.device | str, dtype: torch.dtype = torch.float32) -> float | None:
    """The datasheet peak TFLOP/s of `device` (a CUDA GPU listed in `PEAK_TFLOPS`) for `dtype`, else None."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for (fragment, d), peak in PEAK_TFLOPS.items() if fragment in name and d == dtype), None)
