"""The four claims of Neural ODEs (Chen et al. 2018): adjoint gradients are backprop's gradients (Sec. 2), with
memory flat in the number of function evaluations (Sec. 2, Fig. 3 and Table 1's O(1) memory), ODE-Net matches a
ResNet with a third of its parameters (Table 1), and a latent ODE extrapolates irregularly sampled spirals where an
RNN does not (Sec. 5.1, Fig. 8, Table 2)."""

from __future__ import annotations

import functools
import time
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torchdiffeq import odeint, odeint_adjoint

from ...data import make_spirals
from ...engine.bench import plot_cost_panels
from ...engine.claims import ClaimResult, claim
from ...engine.runtime import num_threads
from ...engine.trainer import Trainer
from .bench import memory_vs_nfe
from .latent_ode import LatentDynamics, LatentODE, RNNForecaster
from .odeblock import CountedDynamics
from .odenet import odenet, resnet

# ----------------------------------------------------------------------------- 1. adjoint = backprop


def gradients(func: CountedDynamics, h0: torch.Tensor, weight: torch.Tensor, adjoint: bool, tol: float):
    """dL/d(h0, theta) of L = <weight, h(1)> by the adjoint method or through dopri5; and the forward/backward NFE.

    The method is about gradients: they are taken here with torch.autograd.grad, not through a training loop."""
    h0 = h0.detach().requires_grad_(True)
    t = torch.tensor([0.0, 1.0], dtype=h0.dtype)
    func.nfe = 0
    h1 = (odeint_adjoint if adjoint else odeint)(func, h0, t, rtol=tol, atol=tol, method="dopri5")[-1]
    nfe_forward, func.nfe = func.nfe, 0
    grads = torch.autograd.grad((weight * h1).sum(), (h0, *func.parameters()))
    return torch.cat([g.flatten() for g in grads]), nfe_forward, func.nfe


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def exact_gradients(func: CountedDynamics, h0: torch.Tensor, weight: torch.Tensor, steps: int) -> torch.Tensor:
    """The reference: backprop through rk4 with `steps` fixed steps (error O(steps^-4), ~1e-8 at 200 steps here)."""
    h0 = h0.detach().requires_grad_(True)
    t = torch.tensor([0.0, 1.0], dtype=h0.dtype)
    h1 = odeint(func, h0, t, method="rk4", options=dict(step_size=1.0 / steps))[-1]
    return torch.cat([g.flatten() for g in torch.autograd.grad((weight * h1).sum(), (h0, *func.parameters()))])


@claim(
    paper="neural_ode",
    statement=("Gradients by the adjoint method (Alg. 1) equal those of backpropagation through the ODE solver, up to "
               "the solver's tolerance (Sec. 2); the adjoint needs no stored forward pass."),
    criterion=("MLP dynamics (the latent ODE's f, 8 -> 64 -> 64 -> 8, float64), dopri5, gradients of (h0, theta): for "
               "every seed, at rtol = atol = 1e-8 the adjoint and backprop gradients differ by <= 1e-4 (relative) "
               "and each is within 1e-4 of the exact gradient (backprop through rk4 with fine fixed steps), and the "
               "adjoint's distance to the exact gradient at 1e-8 is <= 1e-2 x its distance at 1e-2 (an error that "
               "vanishes with the tolerance, not a bias)"),
    quick=dict(tols=(1e-2, 1e-8), dim=4, hidden=16, batch=4, exact_steps=50, seeds=1),
    full=dict(tols=(1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-9), dim=8, hidden=64, batch=16, exact_steps=200, seeds=3),
)
@num_threads(1)
def adjoint_gradients(cfg, ctx) -> ClaimResult:
    diff, drift, control = ({tol: [] for tol in cfg.tols} for _ in range(3))
    nfe, checks = [], []
    for seed in range(cfg.seeds):
        ctx.seed(seed)
        func = CountedDynamics(LatentDynamics(cfg.dim, cfg.hidden)).double()
        h0 = torch.randn(cfg.batch, cfg.dim, dtype=torch.float64)
        weight = torch.randn_like(h0)                             # L = <weight, h(1)>
        exact = exact_gradients(func, h0, weight, cfg.exact_steps)
        for tol in cfg.tols:
            direct, f_dir, b_dir = gradients(func, h0, weight, adjoint=False, tol=tol)
            adjoint, f_adj, b_adj = gradients(func, h0, weight, adjoint=True, tol=tol)
            diff[tol].append(relative(adjoint, direct))          # adjoint vs backprop at the same tolerance
            drift[tol].append(relative(adjoint, exact))          # how far the adjoint is from the exact gradient
            control[tol].append(relative(direct, exact))         # how far backprop is from it
            nfe.append(dict(seed=seed, tol=tol, backprop_forward=f_dir, backprop_backward=b_dir,
                            adjoint_forward=f_adj, adjoint_backward=b_adj))
        checks.append(diff[1e-8][-1] <= 1e-4 and drift[1e-8][-1] <= 1e-4 and control[1e-8][-1] <= 1e-4
                      and drift[1e-8][-1] <= 1e-2 * drift[1e-2][-1])
    metrics = {"max_adjoint_vs_backprop": {tol: max(v) for tol, v in diff.items()},
               "max_adjoint_vs_exact": {tol: max(v) for tol, v in drift.items()},
               "max_backprop_vs_exact": {tol: max(v) for tol, v in control.items()},
               "adjoint_vs_backprop": diff, "adjoint_vs_exact": drift, "backprop_vs_exact": control,
               "passed_per_seed": checks, "nfe": nfe}
    return ClaimResult(metrics=metrics, passed=all(checks), figure=plot_gradient_agreement(diff, drift, control),
                       notes=f"MLP dynamics {cfg.dim} -> {cfg.hidden} -> {cfg.hidden} -> {cfg.dim}, batch {cfg.batch}; "
                             f"exact gradient: backprop through rk4 with {cfg.exact_steps} steps")


def plot_gradient_agreement(diff: dict, drift: dict, control: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    tols = sorted(diff)
    for values, label, style in ((diff, "adjoint vs. backprop", "o-"), (drift, "adjoint vs. exact", "s--"),
                                 (control, "backprop vs. exact", "^:")):
        ax.plot(tols, [max(values[t]) for t in tols], style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="solver tolerance (rtol = atol)",
           ylabel="relative gradient difference (max over seeds)", title="Adjoint gradients vs. backprop (dopri5)")
    ax.axhline(1e-4, color="k", lw=0.8, ls="--")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 2. memory vs NFE


@claim(
    paper="neural_ode",
    statement=("The adjoint method trains with memory constant in the number of function evaluations, while "
               "backpropagation through the solver stores every evaluation (Sec. 2; Table 1: O(1) vs O(L) memory)."),
    criterion=("peak memory of one forward+backward of ODE-Net's block (rk4, NFE = 4 x steps from 8 to 256): "
               "log-log slope against NFE <= 0.1 for the adjoint and >= 0.8 for backprop, and backprop's peak at "
               "the largest NFE >= 10 x the adjoint's"),
    quick=dict(nfes=(8, 16, 32), batch=2, width=8, seeds=1),
    full=dict(nfes=(8, 16, 32, 64, 128, 256), batch=32, width=64, seeds=1),
)
@num_threads(1)
def adjoint_memory(cfg, ctx) -> ClaimResult:
    rows, slopes = memory_vs_nfe(cfg.nfes, batch=cfg.batch, width=cfg.width, device=ctx.device)
    peak = {m: {r["size"]: r["peak_mb"] for r in rows if r["method"] == m} for m in ("adjoint", "backprop")}
    largest = max(cfg.nfes)
    ratio = peak["backprop"][largest] / peak["adjoint"][largest]
    passed = slopes["adjoint"]["peak_mb"] <= 0.1 and slopes["backprop"]["peak_mb"] >= 0.8 and ratio >= 10
    figure = plot_cost_panels(rows, slopes, xlabel="number of function evaluations (rk4, 4 per step)",
                              title=f"ODE block (width {cfg.width}, batch {cfg.batch}): adjoint vs. backprop",
                              guides=(1,))
    return ClaimResult(metrics={"rows": rows, "slopes": slopes, "peak_mb": peak, "ratio_at_largest_nfe": ratio},
                       passed=passed, figure=figure)


# ----------------------------------------------------------------------------- 3. ODE-Net vs ResNet (Table 1)

MODELS = ("odenet", "resnet")


def build(kind: str, cfg, data):
    kw = dict(width=cfg.width, num_classes=data.num_classes, in_chans=data.in_chans)
    if kind == "odenet":
        return odenet(method="rk4", steps=cfg.rk4_steps, adjoint=True, **kw)
    return resnet(**kw)


def split(dataset: TensorDataset, n_val: int) -> tuple[TensorDataset, TensorDataset]:
    x, y = dataset.tensors
    return TensorDataset(x[:-n_val], y[:-n_val]), TensorDataset(x[-n_val:], y[-n_val:])


@claim(
    paper="neural_ode",
    statement=("ODE-Net reaches the test error of a ResNet with about a third of its parameters (Table 1: 0.42% with "
               "0.22M vs 0.41% with 0.60M on MNIST)."),
    criterion=("Fashion-MNIST, the presets' architectures (width 64), each model at the learning rate its own sweep "
               "picks on a validation split, the same budget (300 steps of 64): ODE-Net's mean test error over seeds "
               "<= the ResNet's + 2.0 points, with <= 0.4 x the ResNet's parameters"),
    quick=dict(width=8, rk4_steps=1, lrs=(3e-3,), sweep_steps=2, steps=3, batch_size=32, n_val=64, n_test=128,
               seeds=1),
    full=dict(width=64, rk4_steps=1, lrs=(3e-4, 1e-3, 3e-3), sweep_steps=60, steps=300, batch_size=64, n_val=2000,
              n_test=5000, seeds=2),
)
@num_threads(1)                                             # on a shared 2-core machine, faster than two
def odenet_vs_resnet(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    train, val = split(data.train, cfg.n_val)
    sweep_data = replace(data, train=train, test=val)
    data = replace(data, test=TensorDataset(*(t[:cfg.n_test] for t in data.test.tensors)))
    fit = functools.partial(ctx.fit_and_eval, batch_size=cfg.batch_size, optimizer="adam", eval_train=False)
    sweep = {kind: {} for kind in MODELS}
    for kind, lr in ctx.grid(MODELS, cfg.lrs):                    # each model's own learning rate (seed 0)
        ctx.seed(0)
        sweep[kind][lr] = fit(build(kind, cfg, data), sweep_data, steps=cfg.sweep_steps, lr=lr, seed=0,
                              desc=f"sweep {kind} lr {lr:g}").error
    best = {kind: min(cfg.lrs, key=lambda lr: sweep[kind][lr]) for kind in MODELS}
    errors, seconds, nfe = {kind: [] for kind in MODELS}, {kind: [] for kind in MODELS}, []
    for seed, kind in ctx.grid(cfg.seeds, MODELS):
        ctx.seed(seed)
        model, start = build(kind, cfg, data), time.perf_counter()
        errors[kind].append(fit(model, data, steps=cfg.steps, lr=best[kind], seed=seed,
                                desc=f"{kind} seed {seed}").error)
        seconds[kind].append(time.perf_counter() - start)
        if kind == "odenet":
            nfe.append((model.features.nfe_forward, model.features.nfe_backward))
    params = {kind: sum(p.numel() for p in build(kind, cfg, data).parameters()) for kind in MODELS}
    mean = {kind: float(np.mean(v)) for kind, v in errors.items()}
    param_ratio = params["odenet"] / params["resnet"]
    passed = mean["odenet"] <= mean["resnet"] + 2.0 and param_ratio <= 0.4
    metrics = {"test_error": mean, "test_error_per_seed": errors, "params": params, "param_ratio": param_ratio,
               "lr": best, "sweep_val_error": sweep, "seconds_per_run": {k: float(np.mean(v)) for k, v in
                                                                            seconds.items()},
               "odenet_nfe_forward_backward": nfe, "images_seen": cfg.steps * cfg.batch_size}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_table1(mean, errors, params, data.name),
                       notes=f"width {cfg.width}; ODE-Net solved by rk4 "
                             f"with {cfg.rk4_steps} step(s) ({4 * cfg.rk4_steps} NFE), adjoint gradients; "
                             f"{cfg.steps} steps of {cfg.batch_size}, Adam, cosine decay")


def plot_table1(mean: dict, errors: dict, params: dict, dataset: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for i, kind in enumerate(MODELS):
        ax.bar(i, mean[kind], color=("tab:red", "tab:blue")[i], alpha=0.7)
        ax.plot([i] * len(errors[kind]), errors[kind], "k.")
    ax.set_xticks(range(len(MODELS)), [f"ODE-Net\n{params['odenet']:,} params",
                                       f"ResNet\n{params['resnet']:,} params"])
    ax.set(ylabel="test error (%)", title=f"{dataset}: ODE-Net vs. ResNet (cf. Table 1)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 4. latent ODE on spirals


def latent_step(trainer, batches, t):
    obs, obs_t, obs_idx = batches["train"]
    return {"loss": trainer.backward(trainer.nets["model"].loss(obs, obs_t, obs_idx, t))}


def rnn_step(trainer, batches):
    obs, obs_t, _ = batches["train"]
    return {"loss": trainer.backward(trainer.nets["model"].loss(obs, obs_t))}


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(((pred - target) ** 2).sum(-1).mean().sqrt())


@claim(
    paper="neural_ode",
    statement=("A latent ODE trained on irregularly sampled noisy spirals extrapolates them beyond the observed "
               "window, where an RNN that reads the same observations and their time gaps does not (Sec. 5.1, "
               "Fig. 8, Table 2)."),
    criterion=("over the extrapolation horizon (as many grid points as the observed window), the latent ODE's RMSE "
               "to the noise-free spirals is below the RNN's on every seed, and its mean over seeds is <= 0.5 x that "
               "of holding the last observation"),
    quick=dict(n_train=64, n_test=32, window=20, horizon=10, n_obs=10, grid=200, steps=3, batch_size=32,
               lr_ode=3e-3, lr_rnn=3e-2, seeds=1),
    full=dict(n_train=1000, n_test=200, window=50, horizon=50, n_obs=30, grid=500, steps=1000, batch_size=100,
              lr_ode=3e-3, lr_rnn=3e-2, seeds=3),
)
@num_threads(1)                                             # tiny sequential models: fastest on one thread
def latent_extrapolation(cfg, ctx) -> ClaimResult:
    rmses = {k: {"interpolation": [], "extrapolation": []} for k in ("latent_ode", "rnn", "last_observation")}
    example = None
    for seed in range(cfg.seeds):
        kw = dict(window=cfg.window, horizon=cfg.horizon, n_obs=cfg.n_obs, grid=cfg.grid)
        train, test = make_spirals(cfg.n_train, seed=2 * seed, **kw), make_spirals(cfg.n_test, seed=2 * seed + 1, **kw)
        t, future = train.t, slice(cfg.window, cfg.window + cfg.horizon)
        stream = TensorDataset(train.obs, train.obs_t, train.obs_idx)
        ctx.seed(seed)
        ode = LatentODE()                                        # dopri5, rtol 1e-3, atol 1e-4
        rnn = RNNForecaster()
        for model, step, lr, name in ((ode, functools.partial(latent_step, t=t), cfg.lr_ode, "latent ODE"),
                                      (rnn, rnn_step, cfg.lr_rnn, "RNN")):
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            Trainer(model, opt, steps=cfg.steps, step=step, data=stream, batch_size=cfg.batch_size, seed=seed,
                    device=ctx.device, progress=ctx.progress, desc=f"{name} seed {seed}").fit()
        with torch.no_grad():
            ode_pred = ode(test.obs, test.obs_t, t)                                # (N, T, 2)
            rnn_pred = rnn(test.obs, test.obs_t, t[future])                        # (N, horizon, 2)
        hold = test.obs[:, -1:].expand(-1, cfg.horizon, -1)                         # the last observation, held
        unobserved = torch.ones(len(test), cfg.window, dtype=torch.bool).scatter_(1, test.obs_idx, False)
        rmses["latent_ode"]["extrapolation"].append(rmse(ode_pred[:, future], test.clean[:, future]))
        rmses["latent_ode"]["interpolation"].append(rmse(ode_pred[:, :cfg.window][unobserved],
                                                         test.clean[:, :cfg.window][unobserved]))
        rmses["rnn"]["extrapolation"].append(rmse(rnn_pred, test.clean[:, future]))
        rmses["last_observation"]["extrapolation"].append(rmse(hold, test.clean[:, future]))
        if example is None:
            example = (test, ode_pred, rnn_pred)
    mean = {k: float(np.mean(v["extrapolation"])) for k, v in rmses.items()}
    per_seed = [o < r for o, r in zip(rmses["latent_ode"]["extrapolation"], rmses["rnn"]["extrapolation"])]
    passed = all(per_seed) and mean["latent_ode"] <= 0.5 * mean["last_observation"]
    return ClaimResult(metrics={"extrapolation_rmse": mean, "rmse_per_seed": rmses, "below_rnn_per_seed": per_seed,
                                "ratio_to_rnn": mean["latent_ode"] / mean["rnn"]},
                       passed=passed, figure=plot_spirals(*example, cfg.window))


def plot_spirals(test, ode_pred, rnn_pred, window: int, n: int = 4):
    """Fig. 8 redrawn: observations, the true spiral, the latent ODE's and the RNN's reconstruction/extrapolation."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2))
    for i, ax in enumerate(axes):
        ax.plot(*test.clean[i].T, color="0.6", lw=3, label="true")
        ax.plot(*test.obs[i].T, "k.", ms=4, label="observed")
        ax.plot(*ode_pred[i, :window].T, color="tab:red", lw=1.5, label="latent ODE")
        ax.plot(*ode_pred[i, window - 1:].T, color="tab:red", lw=1.5, ls="--")
        ax.plot(*rnn_pred[i].T, color="tab:blue", lw=1.5, ls="--", label="RNN (extrapolated)")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    fig.suptitle("Spirals: dashed = extrapolation beyond the observed window")
    fig.tight_layout()
    return fig
