r"""What the messages of a trained graph network hold (Cranmer et al. 2020, Sec. 4.1, Fig. 4 and Appendix).

- `edge_records`: for every edge of a set of graphs, the messages m_ij and the physical quantities of the pair
  (dx, dy = x_i - x_j, r, the masses, the true force F_ij of `simulate.pair_force`).
- `leading_components`: the message components that carry the information: the D of largest standard deviation
  over the edges (for the bottleneck model: all D).
- `force_r2`: the paper's test of linearity, the R^2 of a least-squares fit m_k ~ a F_x + b F_y + c of each leading
  component on the true force components, on the edges whose force is within the 90th percentile of |F| (the
  paper's fits also leave out the heaviest tail, where a 1/r law near r = 0 makes a few edges dominate).
- `symbolic_fit`: symbolic regression (gplearn's genetic programming, the paper uses Eureqa) of one message
  component on (dx, dy, r), the best program returned as a sympy expression.
"""

from __future__ import annotations

import numpy as np
import sympy
import torch
from torch import Tensor

from .gn import GraphNetwork, edge_index
from .simulate import pair_force

DX, DY, R = sympy.symbols("dx dy r", real=True)
FORCE_QUANTILE = 0.9


@torch.no_grad()
def edge_records(model: GraphNetwork, x: Tensor, law: str) -> dict[str, np.ndarray]:
    """Messages and pair quantities of every edge of the graphs `x` (B, n, 2D + 2), each (B n (n - 1), ...)."""
    model.eval()
    receivers, senders = edge_index(x.shape[1])
    x_i, x_j = x[:, receivers].double(), x[:, senders].double()                 # (B, E, F)
    d = model.dim
    delta = x_i[..., :d] - x_j[..., :d]
    out = dict(messages=model.messages(x), delta=delta, r=delta.norm(dim=-1), m_i=x_i[..., -1], m_j=x_j[..., -1],
               force=pair_force(x_i, x_j, law))
    return {k: v.flatten(0, 1).double().numpy() for k, v in out.items()}


def leading_components(messages: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` message components of largest standard deviation, largest first."""
    return np.argsort(-messages.std(0), kind="stable")[:k]


def linear_r2(target: np.ndarray, features: np.ndarray) -> float:
    """R^2 = 1 - SS_res / SS_tot of the least-squares fit target ~ features @ w + c."""
    design = np.column_stack([features, np.ones(len(target))])
    w, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ w
    return float(1 - residual @ residual / ((target - target.mean()) @ (target - target.mean())))


def force_r2(records: dict[str, np.ndarray], k: int) -> list[float]:
    """The R^2 of each of the `k` leading message components fitted as a linear combination of the true force
    components plus a constant, on the edges with |F| <= its 90th percentile."""
    force = records["force"]
    norm = np.linalg.norm(force, axis=1)
    keep = norm <= np.quantile(norm, FORCE_QUANTILE)
    return [linear_r2(records["messages"][keep, c], force[keep]) for c in leading_components(records["messages"], k)]


def symbolic_fit(target: np.ndarray, records: dict[str, np.ndarray], *, population: int, generations: int,
                 parsimony: float, seed: int) -> sympy.Expr:
    """Genetic-programming symbolic regression (gplearn, one process) of `target` on (dx, dy, r) with the
    operations + - * / and 1/x; returns the best program as a sympy expression in `DX`, `DY`, `R`."""
    from gplearn.genetic import SymbolicRegressor

    inputs = np.column_stack([records["delta"][:, 0], records["delta"][:, 1], records["r"]])
    regressor = SymbolicRegressor(population_size=population, generations=generations, tournament_size=20,
                                  function_set=("add", "sub", "mul", "div", "inv"), metric="mse",
                                  parsimony_coefficient=parsimony, const_range=(-2.0, 2.0), p_crossover=0.7,
                                  p_subtree_mutation=0.1, p_hoist_mutation=0.05, p_point_mutation=0.1,
                                  max_samples=1.0, random_state=seed, n_jobs=1)
    regressor.fit(inputs, target)
    return program_to_sympy(regressor._program.program)


def program_to_sympy(program: list) -> sympy.Expr:
    """A gplearn program (prefix list of functions, feature indices and float constants) as a sympy expression;
    gplearn's protected division and inverse (1 where |y| <= 0.001, 0 for 1/x) are read as x / y and 1 / x."""
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b, "inv": lambda a: 1 / a}
    variables = (DX, DY, R)

    def build(position: int) -> tuple[sympy.Expr, int]:
        node = program[position]
        if isinstance(node, (int, np.integer)):
            return variables[node], position + 1
        if isinstance(node, float):
            return sympy.Float(node), position + 1
        args, position = [], position + 1
        for _ in range(node.arity):
            arg, position = build(position)
            args.append(arg)
        return ops[node.name](*args), position

    expr, end = build(0)
    if end != len(program):
        raise ValueError(f"malformed program: {len(program) - end} nodes left over")
    return expr


RADIAL = {"spring (1 - 1/r)": lambda r: 1 - 1 / r, "Hooke, no rest length (1)": lambda r: np.ones_like(r),
          "constant magnitude (1/r)": lambda r: 1 / r, "1/r force (1/r^2)": lambda r: r ** -2.0,
          "1/r^2 force (1/r^3)": lambda r: r ** -3.0}


def is_affine_in_displacement(expr: sympy.Expr) -> bool:
    """Whether `expr` is exactly affine in (dx, dy), as a central pair law f(r) (dx, dy) / r is: every second
    derivative in dx and dy simplifies to 0."""
    return all(sympy.simplify(sympy.diff(expr, *pair)) == 0 for pair in ((DX, DX), (DY, DY), (DX, DY)))


def central_law_r2(expr: sympy.Expr, r: np.ndarray) -> dict[str, float]:
    """Which central force law an expression E(dx, dy, r) that is affine in (dx, dy) carries: E = g_x(r) dx +
    g_y(r) dy + g_0(r), and a law with radial factor h gives (g_x, g_y) = (a, b) h(r) (the spring's force is
    -2 (r - 1) (dx, dy) / r, h = 1 - 1/r with the softening 0.01 aside). For each h of `RADIAL`: the R^2 of the
    least-squares fit of g by a h over the distances `r` of the test edges, relative to the sum of squares of g (no
    intercept: a radial factor has none), for each of g_x, g_y whose root mean square is at least a tenth of the
    larger one's; the smaller of the two. R^2 = 0 where E does not depend on (dx, dy), -inf where g_x or g_y is not
    finite on `r`; g_0 (the message's offset) carries no direction and is left out."""
    factors = [np.broadcast_to(np.asarray(sympy.lambdify(R, sympy.diff(expr, v), "numpy")(r), float), r.shape)
               for v in (DX, DY)]
    if not all(np.isfinite(g).all() for g in factors):
        return {law: float("-inf") for law in RADIAL}
    rms = [float(np.sqrt(np.mean(g ** 2))) for g in factors]
    if max(rms) == 0:
        return {law: 0.0 for law in RADIAL}
    significant = [g for g, size in zip(factors, rms) if size >= 0.1 * max(rms)]
    fits = {}
    for law, h in RADIAL.items():
        hr = h(r)
        fits[law] = min(float(1 - np.sum((g - (g @ hr) / (hr @ hr) * hr) ** 2) / (g @ g)) for g in significant)
    return fits
