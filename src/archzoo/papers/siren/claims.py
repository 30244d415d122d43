"""SIREN's claims (Sitzmann et al. 2020, arXiv:2006.09661): image fitting against ReLU baselines (Fig. 1), the
arcsine distribution of activations at init (Theorem 1, Fig. 7) and Poisson reconstruction from gradients (Fig. 3).

The fits follow Sec. 4.1: the whole coordinate grid of scikit-image's `camera` in every Adam step, the same number
of steps for every network, each network at its own best learning rate of a small sweep (the paper uses 1e-4 for
all). Networks of the same depth and width; ReLU P.E. encodes each coordinate with the Nyquist number of
frequencies for the image's side (the authors' code).
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.claims import ClaimResult, claim
from .derivatives import gradient, laplacian
from .fitting import fit
from .models import CoordinateMLP, Siren, nyquist_frequencies, relu_mlp
from .signals import image_derivatives, image_signal
from .sine import FIRST_OMEGA_0, SineLayer, arcsine_cdf, ks_distance, sine_activations

NETWORKS = ("relu", "relu_pe", "siren")
LABELS = {"relu": "ReLU", "relu_pe": "ReLU P.E.", "siren": "SIREN"}


def make_network(kind: str, cfg, side: int) -> CoordinateMLP:
    """One of the compared networks, (x, y) -> grey value, with the claim's depth and width."""
    if kind == "siren":
        return Siren(2, cfg.hidden_features, cfg.hidden_layers, 1)
    frequencies = nyquist_frequencies(side) if kind == "relu_pe" else 0
    return relu_mlp(2, cfg.hidden_features, cfg.hidden_layers, 1, num_frequencies=frequencies)


def sweep(ctx, cfg, networks, coords, values, supervise="values", target=None) -> dict:
    """Fit every network at every learning rate of `cfg.lrs` for `cfg.seeds` seeds; keep the PSNRs, the curves and,
    for seed 0 at each network's best rate, the fitted model.

    Returns {kind: {"psnr": {lr: [per seed]}, "best_lr", "best_psnr" (mean over seeds), "curve", "model"}}.
    """
    out = {}
    for kind in networks:
        psnrs, curves, models = {lr: [] for lr in cfg.lrs}, {}, {}
        for lr, seed in ctx.grid(cfg.lrs, cfg.seeds):
            ctx.seed(seed)
            model = make_network(kind, cfg, cfg.side)
            try:
                result = fit(model, coords, values, steps=cfg.steps, lr=lr, supervise=supervise, target=target,
                             eval_every=cfg.eval_every, device=ctx.device, seed=seed, progress=ctx.progress,
                             desc=f"{LABELS[kind]} lr {lr:g} seed {seed}")
            except FloatingPointError:                  # diverged (the Trainer's NaN guard): recorded as None
                psnrs[lr].append(None)
                continue
            psnrs[lr].append(result.psnr)
            if seed == 0:
                curves[lr], models[lr] = result.curve, model.cpu()
        best = max(cfg.lrs, key=lambda lr: -np.inf if None in psnrs[lr] else np.mean(psnrs[lr]))
        out[kind] = {"psnr": psnrs, "best_lr": best, "best_psnr": float(np.mean(psnrs[best])),
                     "curve": curves[best], "model": models[best]}
    return out


def compare_on_image(cfg, ctx, networks, supervise: str = "values"):
    """Fit `networks` to the camera image's values or Sobel gradients (`supervise`) at every rate of the sweep.

    Returns (results of `sweep`, coords, values, metrics: each network's best PSNR, its PSNR per rate and its
    curve at the best rate, and the number of positional-encoding frequencies)."""
    coords, values = image_signal(cfg.side)
    target = image_derivatives(values, cfg.side)[0] if supervise == "gradients" else None
    results = sweep(ctx, cfg, networks, coords, values, supervise, target)
    metrics = {"best_psnr": {kind: r["best_psnr"] for kind, r in results.items()},
               "networks": {kind: {"psnr_per_lr": {f"{lr:g}": v for lr, v in r["psnr"].items()},
                                   "best_lr": r["best_lr"], "best_psnr": r["best_psnr"],
                                   "curve_at_best_lr": r["curve"]} for kind, r in results.items()},
               "positional_encoding_frequencies": nyquist_frequencies(cfg.side)}
    return results, coords, values, metrics


# ----------------------------------------------------------------------------- Fig. 1: fitting an image


@claim(
    paper="siren",
    statement=("Fitting the camera image, SIREN's PSNR far exceeds that of a ReLU MLP and of a ReLU MLP with "
               "positional encoding of the same size after the same number of steps, each network at its own best "
               "learning rate (Fig. 1)."),
    criterion=("PSNR of the fit after `steps` full-image Adam steps, each network at its best learning rate of "
               "`lrs` (mean over seeds): SIREN >= ReLU P.E. + 10 dB and SIREN >= ReLU + 10 dB"),
    quick=dict(side=16, hidden_features=16, hidden_layers=1, steps=6, lrs=(1e-3, 1e-2), eval_every=3, seeds=1),
    full=dict(side=128, hidden_features=128, hidden_layers=3, steps=200, lrs=(1e-3, 3e-3, 1e-2), eval_every=25,
              seeds=1),
)
def image_fitting(cfg, ctx) -> ClaimResult:
    results, coords, values, metrics = compare_on_image(cfg, ctx, NETWORKS)
    best = metrics["best_psnr"]
    metrics |= {"siren_minus_relu_pe": best["siren"] - best["relu_pe"],
                "siren_minus_relu": best["siren"] - best["relu"],
                "parameters": {k: sum(p.numel() for p in r["model"].parameters()) for k, r in results.items()}}
    passed = metrics["siren_minus_relu_pe"] >= 10.0 and metrics["siren_minus_relu"] >= 10.0
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_fits(results, coords, values, cfg),
                       notes=f"camera at {cfg.side}x{cfg.side} px, {cfg.hidden_layers + 2} layers of "
                             f"{cfg.hidden_features} units, {cfg.steps} Adam steps on the whole image")


def field_images(model, coords: torch.Tensor, side: int) -> list[np.ndarray]:
    """The fitted image, the magnitude of its gradient and its Laplacian, by autograd (Fig. 1's three columns)."""
    x = coords.clone().requires_grad_()
    phi = model(x)
    grad = gradient(phi, x)
    lap = laplacian(phi, x)
    return [t.detach().reshape(side, side).numpy() for t in (phi[:, 0], grad.norm(dim=-1), lap[:, 0])]


def plot_fits(results: dict, coords, values, cfg, title="fit to the image"):
    """Fig. 1 redrawn: ground truth and each network's fit, with gradient and Laplacian, and PSNR against steps."""
    import matplotlib.pyplot as plt

    side = cfg.side
    grad, lap = image_derivatives(values, side)
    rows = [("ground truth", [values.reshape(side, side).numpy(), grad.norm(dim=-1).reshape(side, side).numpy(),
                              lap.reshape(side, side).numpy()])]
    rows += [(f"{LABELS[k]} (lr {r['best_lr']:g}): {r['best_psnr']:.1f} dB", field_images(r["model"], coords, side))
             for k, r in results.items()]
    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 3.1 * len(rows)))
    truth = rows[0][1]
    limits = [(-1, 1), (0, np.percentile(truth[1], 99)), np.percentile(np.abs(truth[2]), 99) * np.array([-1, 1])]
    for i, (label, images) in enumerate(rows):
        for j, (img, lim, name) in enumerate(zip(images, limits, ("image", "|gradient|", "Laplacian"))):
            axes[i, j].imshow(img, cmap="gray" if j < 2 else "RdBu", vmin=lim[0], vmax=lim[1])
            axes[i, j].set_title(f"{label}\n{name}" if j == 0 else name, fontsize=9)
            axes[i, j].axis("off")
        axes[i, 3].axis("off")
    curves = fig.add_subplot(1, 4, 4)
    for kind, r in results.items():
        steps, psnrs = zip(*r["curve"])
        curves.plot(steps, psnrs, "o-", label=LABELS[kind], markersize=3)
    curves.set_xlabel("step")
    curves.set_ylabel("PSNR (dB)")
    curves.set_title(f"{title}, {side}x{side} px")
    curves.grid(alpha=0.3)
    curves.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Theorem 1 / Fig. 7: init


def init_activations(cfg, init: str, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-activations and activations of a `cfg.depth`-layer sine network at init: the paper's (first layer
    U(-1/n, 1/n), omega_0 = 30; hidden U(-sqrt(6/n)/30, sqrt(6/n)/30), omega_0 = 30) or PyTorch's default for
    `sin(nn.Linear(x))` in the hidden layers (U(-1/sqrt(n), 1/sqrt(n)), i.e. c = 1 and omega_0 = 1)."""
    c, omega_0 = (np.sqrt(6.0), FIRST_OMEGA_0) if init == "paper" else (1.0, 1.0)
    layers = [SineLayer(2, cfg.width, FIRST_OMEGA_0, is_first=True)]
    layers += [SineLayer(cfg.width, cfg.width, omega_0, c=c) for _ in range(cfg.depth - 1)]
    with torch.no_grad():
        return sine_activations(layers, x)


@claim(
    paper="siren",
    statement=("At initialisation the activations of every layer of a deep SIREN are arcsine-distributed on [-1, 1] "
               "(Theorem 1, Fig. 7), thanks to the principled initialisation: with PyTorch's default initialisation "
               "of sin(Linear(x)) they drift away from it with depth."),
    criterion=("Kolmogorov-Smirnov distance between each layer's activations and arcsine(-1, 1), mean over seeds: "
               "<= 0.08 at every one of the 10 layers with the paper's initialisation, and >= 0.3 at layer 10 with "
               "PyTorch's default one"),
    quick=dict(depth=10, width=32, points=256, seeds=1),
    full=dict(depth=10, width=256, points=4096, seeds=3),
)
def arcsine_activations(cfg, ctx) -> ClaimResult:
    inits = ("paper", "default")
    ks = {init: [] for init in inits}                    # per seed: per layer
    std = {init: [] for init in inits}
    samples = {}
    for seed, init in ctx.grid(cfg.seeds, inits):
        ctx.seed(seed)
        x = torch.rand(cfg.points, 2) * 2 - 1            # inputs uniform in [-1, 1]^2 (Theorem 1)
        acts = init_activations(cfg, init, x)
        ks[init].append([ks_distance(a, arcsine_cdf) for _, a in acts])
        std[init].append([float(z.std()) for z, _ in acts])
        if seed == 0:
            samples[init] = [a.flatten().numpy() for _, a in acts]
    mean_ks = {init: np.mean(ks[init], axis=0).tolist() for init in inits}
    passed = max(mean_ks["paper"]) <= 0.08 and mean_ks["default"][-1] >= 0.3
    metrics = {"ks_to_arcsine": mean_ks, "ks_per_seed": ks,
               "preactivation_std": {init: np.mean(std[init], axis=0).tolist() for init in inits},
               "max_ks_paper": max(mean_ks["paper"]), "ks_default_last_layer": mean_ks["default"][-1]}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_activations(samples, mean_ks, cfg))


def plot_activations(samples: dict, mean_ks: dict, cfg):
    """Fig. 7 redrawn: histograms of the activations at a few depths against the arcsine density, and the KS
    distance against depth, for the paper's and PyTorch's default initialisation."""
    import matplotlib.pyplot as plt

    shown = sorted({0, cfg.depth // 2 - 1, cfg.depth - 1})
    fig, axes = plt.subplots(2, len(shown) + 1, figsize=(4 * (len(shown) + 1), 6.5))
    y = np.linspace(-0.999, 0.999, 400)
    density = 1 / (np.pi * np.sqrt(1 - y**2))
    for row, (init, label) in enumerate((("paper", "paper's init"), ("default", "PyTorch default init"))):
        for col, layer in enumerate(shown):
            ax = axes[row, col]
            ax.hist(samples[init][layer], bins=80, range=(-1, 1), density=True, color="tab:blue", alpha=0.7)
            ax.plot(y, density, "k--", linewidth=1, label="arcsine")
            ax.set_ylim(0, 4)
            ax.set_title(f"{label}: layer {layer + 1} (KS {mean_ks[init][layer]:.3f})", fontsize=9)
        axes[row, 0].legend(fontsize=8)
    for row in range(2):
        axes[row, -1].axis("off")
    ax = fig.add_subplot(1, len(shown) + 1, len(shown) + 1)
    for init, label in (("paper", "paper's init"), ("default", "PyTorch default")):
        ax.plot(range(1, cfg.depth + 1), mean_ks[init], "o-", label=label)
    ax.axhline(0.08, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("KS distance to arcsine")
    ax.set_title(f"{cfg.depth} sine layers of {cfg.width} units at init")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Fig. 3: Poisson equation


@claim(
    paper="siren",
    statement=("Supervised only with the camera image's gradients (the Poisson equation), SIREN reconstructs the image "
               "far better than ReLU P.E., each at its own best learning rate (Fig. 3)."),
    criterion=("PSNR of the reconstruction (shifted to the image's mean) after `steps` Adam steps on the Sobel "
               "gradients, each network at its best learning rate of `lrs` (mean over seeds): "
               "SIREN >= ReLU P.E. + 5 dB"),
    quick=dict(side=16, hidden_features=16, hidden_layers=1, steps=6, lrs=(1e-4, 1e-3), eval_every=3, seeds=1),
    full=dict(side=64, hidden_features=128, hidden_layers=3, steps=200, lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
              eval_every=25, seeds=1),
)
def poisson_reconstruction(cfg, ctx) -> ClaimResult:
    results, coords, values, metrics = compare_on_image(cfg, ctx, ("relu_pe", "siren"), supervise="gradients")
    metrics["siren_minus_relu_pe"] = metrics["best_psnr"]["siren"] - metrics["best_psnr"]["relu_pe"]
    return ClaimResult(metrics=metrics, passed=metrics["siren_minus_relu_pe"] >= 5.0,
                       figure=plot_fits(results, coords, values, cfg, title="fit to the gradients"))
