"""`archzoo bench science`, part `gon`: forward+backward of the implicit GON (its latent's gradient, the decoding,
and the backward through both, i.e. one training step's compute) beside the autoencoder with the same SIREN decoder
and an MLP encoder, on batches of 28 x 28 images; ratio = GON / autoencoder, the price of an encoder-free latent.
(No public reference package exists for GONs.)"""

from __future__ import annotations

import torch

from ...engine.bench import bench_module, format_table, register_family_bench
from .autoencoder import ImplicitAutoencoder
from .models import ImplicitGON


def bench_gon(opts) -> str:
    batches = (2, 8) if opts.quick else (16, 64)
    width, side = (16, 8) if opts.quick else (256, 28)
    decoder = dict(num_latent=32, hidden_features=width, hidden_layers=3)
    rows = bench_module(lambda b: ImplicitGON(**decoder), lambda b: (torch.rand(b, 1, side, side),), batches,
                        device=opts.device, repeats=opts.repeats, warmup=opts.warmup,
                        reference=lambda b: ImplicitAutoencoder(img_size=side, **decoder),
                        name="implicit GON", ref_name="autoencoder, same decoder")
    for row in rows:
        row["batch"] = row.pop("size")
    params = sum(p.numel() for p in ImplicitGON(**decoder).parameters())
    return (f"### GON (gon)\n\nForward+backward of the implicit GON (SIREN decoder of 5 layers, {width} units, latent "
            f"32: {params:,} parameters; 256 units is the authors' network) on {side}x{side} images, beside an "
            f"autoencoder with the same decoder and an MLP encoder; ratio = GON / autoencoder (the GON's forward "
            f"includes the gradient at the origin, its backward differentiates through it).\n\n"
            + format_table(rows, ["method", "batch", "time_ms", "peak_mb", "ratio"]))


register_family_bench("science", "gon", bench_gon)
