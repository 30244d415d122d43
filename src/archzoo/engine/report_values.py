"""Metric values for a human: units read from the key names, numbers with separators, long series summarised.

    flatten({"test_accuracy": {"vit": 81.2345}, "curve": [...600 floats]})
    # [("test_accuracy.vit", "81.23%", False), ("curve", "600 values: 2 → 0.5 (min 0.5, max 2)", True)]

Tables show what a reader compares; a series of hundreds of values is its length, first and last value and
range (its figure shows the rest).
"""

from __future__ import annotations

import re
from typing import NamedTuple

SHORT_LIST = 8              # longer metric lists are summarised (length, first -> last, min, max)

NO_UNIT = re.compile(r"slope|ratio|_over_|speedup|_minus_|gain|gap|per_doubling")   # anywhere on the key path
UNITS = [   # (pattern, unit), tried on a metric's keys from the leaf up; the first key that matches decides
    (re.compile(r"^(n|k|step|steps|size|position|images|tokens|depths?|layer|params|parameters|lr|seeds?|p\d+)$"
                r"|loss"), ""),             # quantities without a unit stop the search
    (re.compile(r"([a-z]+)_per_s$"), r" \1/s"),
    (re.compile(r"(^|_)ms$"), " ms"),
    (re.compile(r"(^|_)s$|(^|_)seconds"), " s"),
    (re.compile(r"(^|_)mb$"), " MiB"),      # engine.bench: peak memory in MiB
    (re.compile(r"(^|_)bytes$"), " bytes"),
    (re.compile(r"accurac|^((test|train|gn|bn|final_running|running)_)?error(_per_seed|_curves)?$"), "%"),
]


def unit(path: tuple[str, ...]) -> str:
    """The unit of a metric, read from its key names as the claims write them: accuracy and error in percent
    (the engine's convention), `*_ms`, `*_s`, `*_mb` (MiB), `*_bytes`, `*_per_s`; none for slopes and ratios."""
    if any(NO_UNIT.search(key) for key in path):
        return ""
    for key in reversed(path):
        for pattern, found in UNITS:
            if match := pattern.search(key):
                return match.expand(found)
    return ""


def number(x, unit: str = "") -> str:
    """One value for a human: integers with thousands separators, floats to 4 significant digits, a unit."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return "n/a"
    if not isinstance(x, (int, float)):
        return str(x)                       # "nan", "inf" and labels, as recorded
    if unit == " bytes":
        scale, unit = next(((s, u) for s, u in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")) if abs(x) >= s),
                           (1, " B"))
        x = x / scale
    if float(x).is_integer() and abs(x) < 1e15:
        text = f"{int(x):,}"
    elif abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 1e-3:
        text = f"{x:.4g}"
    else:
        text = f"{x:.2e}"
    return text + unit


def _shape(values) -> list[int] | None:
    """The shape of a rectangular nested list ([] for a scalar), None when ragged."""
    if not isinstance(values, list):
        return []
    if not values:
        return [0]
    inner = [_shape(v) for v in values]
    return [len(values), *inner[0]] if inner[0] is not None and all(s == inner[0] for s in inner) else None


def _leaves(values):
    for v in values:
        yield from (_leaves(v) if isinstance(v, list) else [v])


def fmt(value, path: tuple[str, ...] = ()) -> str:
    """A metric value for a human; a list longer than SHORT_LIST (or nested) as its length and range."""
    u = unit(path)
    if isinstance(value, dict):
        return "(empty)" if not value else f"{len(value)} entries"
    if not isinstance(value, list):
        return number(value, u)
    if not value:
        return "(empty)"
    if all(isinstance(v, dict) for v in value):
        keys = dict.fromkeys(k for v in value for k in v)
        return f"{len(value)} records ({', '.join(map(str, keys))})"
    shape = _shape(value)
    if shape is not None and len(shape) == 1 and len(value) <= SHORT_LIST:
        if u in ("%", " bytes"):                           # 81.2%, 81.7%; sizes each in their own scale
            return ", ".join(number(v, u) for v in value)
        return ", ".join(number(v) for v in value) + u     # 27.85, 30.02, 32.46 MiB
    nums = [v for v in _leaves(value) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    text = " × ".join(map(str, shape)) if shape else f"{len(value)} lists, {len(list(_leaves(value)))}"
    text += " values"
    if shape is not None and len(shape) == 1 and nums and len(nums) == len(value):
        text += f": {number(value[0], u)} → {number(value[-1], u)}"
    if nums:
        text += f" (min {number(min(nums), u)}, max {number(max(nums), u)})"
    elif all(isinstance(v, bool) for v in _leaves(value)):
        text += f", {sum(_leaves(value))} yes"
    return text


class MetricRow(NamedTuple):
    key: str            # dotted path
    value: str          # formatted
    detail: bool        # a per-seed value or a long series: shown folded away in the HTML


def flatten(metrics: dict, prefix: tuple[str, ...] = ()) -> list[MetricRow]:
    """Nested metric dicts as rows (dotted key, formatted value, detail), in the claim's order."""
    rows = []
    for key, value in metrics.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            rows += flatten(value, path)
            continue
        nested = isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value)
        series = nested or (isinstance(value, list) and len(value) > SHORT_LIST)
        rows.append(MetricRow(".".join(path), fmt(value, path), series or any("per_seed" in k for k in path)))
    return rows


def duration(seconds) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "? s"
    return f"{number(round(seconds))} s ({seconds / 60:.0f} min)" if seconds >= 120 else f"{number(seconds)} s"
