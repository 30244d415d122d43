"""The `archzoo` command: list | info | models | run | train | bench | report | demo | data.

Bad input (an unknown name, a wrong value, missing data) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import registry

EXIT_USAGE = 2


def _parse_value(text: str):
    """`--set key=value` values: JSON when it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def count_parameters(name: str, **overrides) -> int:
    """Parameters of a preset, built on the meta device (no memory, no init cost)."""
    import torch

    with torch.device("meta"):
        model = registry.create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- commands


def cmd_list(args) -> None:
    papers = registry.list_papers(args.family)
    rows = []
    for p in papers:
        passed, total = p.claims_passed()
        rows.append({"slug": p.slug, "title": p.title, "year": p.year, "family": p.family, "status": p.status,
                     "models": len(p.models), "claims": f"{passed}/{total}"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(_table(rows, ["slug", "year", "family", "status", "models", "claims", "title"], widths={"title": 60}))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("reproduced", "implemented", "planned")}
    print(f"\n{len(rows)} papers: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def cmd_info(args) -> None:
    p = registry.get_paper(args.slug)
    print(f"{p.title} ({p.year})")
    print(f"  slug: {p.slug}   family: {p.family}   status: {p.status}")
    if p.url:
        print(f"  paper: {p.url}")
    print(f"  {p.summary}")
    if p.models:
        print("  models: " + ", ".join(p.models))
    if p.attentions:
        print("  attentions: " + ", ".join(p.attentions))
    if p.layers:
        print("  layers: " + ", ".join(p.layers))
    for c in p.claims.values():
        r = c.result()
        verdict = "not run" if r is None else ("PASS" if r.get("passed") else "FAIL")
        print(f"  claim {c.name} [{verdict}]: {c.statement}")
        print(f"    criterion: {c.criterion}")
    page = Path(__file__).parent / "papers" / p.slug / "README.md"
    if page.exists():
        print(f"  page: {page}")


def cmd_models(args) -> None:
    names = registry.list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; see `archzoo models`")
    rows = [{"model": n, "paper": registry.model_paper(n), "params": f"{count_parameters(n):,}"} for n in names]
    print(_table(rows, ["model", "paper", "params"]))


def cmd_run(args) -> None:
    from .engine.claims import run_claim

    paper = registry.get_paper(args.slug)
    if not paper.claims:
        raise ValueError(f"paper {args.slug!r} has no claims yet (status: {paper.status})")
    names = [args.claim] if args.claim else list(paper.claims)
    for name in names:
        registry.get_claim(args.slug, name)  # fail fast on a bad --claim
    mode = "quick" if args.quick else "full"
    overrides = _parse_sets(args.set)
    for name in names:
        print(f"== {args.slug}.{name} ({mode})")
        record = run_claim(args.slug, name, mode, seeds=args.seeds, device=args.device, data_dir=args.data_dir,
                           overrides=overrides, out_dir=args.out)
        _print_record(record)


def _print_record(record: dict) -> None:
    from .engine.claims import verdict

    print(f"   {verdict(record)}  {record['criterion']}")
    print(f"   wrote {record['path']} ({record['wall_time_s']} s)")


def cmd_train(args) -> None:
    registry.model_paper(args.model)  # fail fast on an unknown model, before loading data
    import torch

    from .data import load_dataset
    from .engine import distributed
    from .engine.claims import resolve_device
    from .engine.train import evaluate, train
    from .hub import save_pretrained

    data_kw = _parse_sets(args.data_set)
    data = load_dataset(args.data, data_dir=args.data_dir, **data_kw)
    overrides = _parse_sets(args.set)
    for key, attr in (("num_classes", "num_classes"), ("in_chans", "in_chans")):
        if hasattr(data, attr) and key not in overrides and _accepts(args.model, key):
            overrides[key] = getattr(data, attr)
    model = registry.create_model(args.model, **overrides)
    device = resolve_device(args.device)
    out = Path(args.out or f"runs/train/{args.model}-{args.data.replace('/', '_')}")
    result = train(model, data.train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                   optimizer=args.optimizer, weight_decay=args.weight_decay, warmup_steps=args.warmup,
                   grad_clip=args.grad_clip, seed=args.seed, device=device, amp=args.amp, compile=args.compile,
                   log_path=out / "metrics.jsonl", checkpoint_dir=out / "checkpoints",
                   checkpoint_every=args.checkpoint_every, resume=args.resume)
    if not distributed.is_main_process():          # under torchrun, rank 0 evaluates and writes
        return
    metrics = {"final_train_loss": result.final_loss}
    if getattr(data, "test", None) is not None and hasattr(data, "num_classes"):
        metrics.update({f"test_{k}": v for k, v in evaluate(model, data.test, device=device).items()})
    model.to(torch.device("cpu"))
    save_pretrained(model, out)
    print(json.dumps(metrics, indent=2))
    print(f"saved {out}/ (config.json, model.safetensors); load with archzoo.from_pretrained({str(out)!r})")


def _accepts(model: str, key: str) -> bool:
    import inspect

    registry._load_papers()
    fn = registry._MODELS[model][0] if model in registry._MODELS else None
    if fn is None:
        raise registry.unknown("model", model, registry._MODELS)
    params = inspect.signature(fn).parameters
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def cmd_bench(args) -> None:
    from .engine import bench  # noqa: F401  (registers the generic suites)
    from .registry import repo_root

    if args.suite == "all":
        suites = registry.list_benches()
    else:
        suites = [args.suite]
        registry.get_bench(args.suite)
    root = repo_root() or Path.cwd()
    args.out = Path(args.out) if args.out else root / "docs" / "benchmarks.md"
    for suite in suites:
        print(f"== bench {suite}")
        registry.get_bench(suite)(args)


def cmd_report(args) -> None:
    from .engine.report import build_report

    print("wrote " + ", ".join(map(str, build_report())))


def cmd_demo(args) -> None:
    """Real learning on embedded data: every claim with a demo config, then the paper status table.

    A demo that ran on a substitute data set says so in its verdict (`FAIL (on digits)`) and in a closing
    line, and the status table is introduced as what it is (the committed full-run evidence), so the
    two never read as contradicting each other.
    """
    from .engine.claims import run_claim, verdict

    t0 = time.time()
    demos = [(p.slug, c.name) for p in registry.list_papers() for c in p.claims.values() if c.demo is not None]
    if not demos:
        raise ValueError("no claim defines a demo config yet")
    summary, substituted = [], {}
    for slug, name in demos:
        print(f"== {slug}.{name}: {registry.get_claim(slug, name).statement}")
        record = run_claim(slug, name, "demo", device=args.device, data_dir=args.data_dir)
        _print_record(record)
        substituted.update(record["substitutes"])
        evidence = registry.get_claim(slug, name).result()
        summary.append({"claim": f"{slug}.{name}", "demo": verdict(record), "seconds": record["wall_time_s"],
                        "evidence": "none" if evidence is None else verdict(evidence),
                        "criterion": record["criterion"]})
    print("\nDemo claims (demo configs on this machine; 'evidence' is the committed full run in results/):")
    print(_table(summary, ["claim", "demo", "seconds", "evidence", "criterion"], widths={"criterion": 60}))
    if substituted:
        print(f"\n{sum('(on ' in r['demo'] for r in summary)} of {len(summary)} demo claims ran on substitute data ("
              + ", ".join(f"{used} for {asked}" for asked, used in substituted.items())
              + "): their verdicts are not about the claims' data sets. Get the data (`make data`; "
              f"`archzoo data where {next(iter(substituted))}`), then run the demo again.")
    print("\nPaper status, from the committed evidence of full runs (results/), not from this demo:")
    cmd_list(argparse.Namespace(family=None, json=False))
    print(f"\ndemo finished in {time.time() - t0:.0f} s")


def cmd_data(args) -> None:
    """`data list | where NAME | fetch NAME`: which datasets exist, where their files are looked for, a download."""
    from . import data

    if args.action == "list":
        rows = []
        for name in data.list_datasets():
            info = data.dataset_info(name)
            rows.append({"dataset": name, "kind": info.kind, "status": _data_status(info, args.data_dir),
                         "description": info.description})
        print(_table(rows, ["dataset", "kind", "status", "description"], widths={"description": 70}))
        env = data.DATA_DIR_ENV
        print(f"\n{env}={os.environ[env]}: files are looked for there only" if os.environ.get(env) else
              f"\nfiles are looked for in --data-dir, then system folders, then ~/.cache/archzoo ({env} replaces "
              "the last two); `archzoo data where NAME` lists them")
        return
    if not args.name:
        raise ValueError(f"`archzoo data {args.action}` needs a dataset name; see `archzoo data list`")
    info = data.dataset_info(args.name)
    if args.action == "where":
        if info.source is None:
            print(f"{args.name}: needs no files ({info.description})")
            return
        found = data.find(args.name, info.source, args.data_dir)
        print(f"{args.name} is looked for in, in order:")
        for folder in data.search_dirs(args.name, info.source, args.data_dir):
            print(f"  {folder}{'   <- found here' if folder == found else ''}")
        if found is None:
            print(f"not found. {data.how_to_get(args.name, info.source)}")
        return
    source = info.source
    if source is None:
        raise ValueError(f"dataset {args.name!r} needs no files: it ships with a package or is generated")
    print(f"fetching {args.name}: {', '.join(source.files)} from {source.mirrors[0]}"
          + (f" (or {', '.join(source.mirrors[1:])})" if len(source.mirrors) > 1 else "") + ", SHA-256 checked")
    folder = data.fetch_dataset(args.name)
    print(f"{args.name}: in {folder}")


def _data_status(info, data_dir) -> str:
    from . import data

    if info.source is None:
        return "always available"
    found = data.find(info.name, info.source, data_dir)
    return "missing" if found is None else f"present: {found}"


# ----------------------------------------------------------------------------- output


def _table(rows: list[dict], columns: list[str], widths: dict | None = None) -> str:
    widths = widths or {}

    def cell(row, col):
        text = str(row.get(col, ""))
        limit = widths.get(col)
        return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."

    size = {c: max([len(c)] + [len(cell(r, c)) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(size[c]) for c in columns).rstrip(),
             "  ".join("-" * size[c] for c in columns)]
    lines += ["  ".join(cell(r, c).ljust(size[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archzoo", description="The deep-learning architectures course, runnable.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="all 64 papers with status and claims")
    p.add_argument("--family", help="cnn, attention, vision, science, moe, learning, generative, perception")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("info", help="one paper: models, claims, verdicts")
    p.add_argument("slug")
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("models", help="registered presets and their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("run", help="run a paper's claims (full: writes results/<slug>/)")
    p.add_argument("slug")
    p.add_argument("--claim", help="one claim by name (default: all of the paper's claims)")
    p.add_argument("--quick", action="store_true", help="the seconds-long config; writes to runs/, not results/")
    p.add_argument("--seeds", type=int, help="override the number of seeds (the run then goes to runs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (goes to runs/)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--out", help="write the record and figure here instead")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("train", help="train a preset on a dataset with the engine")
    p.add_argument("model")
    p.add_argument("--data", required=True, help="digits, fashion-mnist, mnist, cifar10, pydoc, a task, or a path")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--data-set", action="append", metavar="KEY=VALUE", help="dataset option, e.g. length=512")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="model override, e.g. num_classes=10")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adamw", help="adamw | adam | sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps before the cosine schedule")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="autocast (bf16) on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--out", help="output folder (default runs/train/<model>-<data>)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("bench", help="time and memory benchmarks (writes docs/benchmarks.md)")
    p.add_argument("suite", help="a suite name (see `archzoo bench list`) or 'all'")
    p.add_argument("--pattern", default="*", help="which models or methods (fnmatch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--length", type=int, default=None, help="sequence length of `bench tasks` (default 256)")
    p.add_argument("--family", default=None, help="`bench models`: only this family's presets (its own section)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke test)")
    p.add_argument("--out", help="markdown file to write (default docs/benchmarks.md)")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("report", help="build docs/results.md and report/index.html from results/")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("demo", help="real learning on embedded data, decided by the claims' criteria")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("data", help="datasets: list, where their files are looked for, fetch (the only download)")
    p.add_argument("action", choices=("list", "where", "fetch"),
                   help="list: every dataset and whether it is present; where NAME: the folders searched; "
                        "fetch NAME: download it with SHA-256 checks into $ARCHZOO_DATA_DIR/NAME or ~/.cache/archzoo")
    p.add_argument("name", nargs="?", help="a dataset name (where, fetch)")
    p.add_argument("--data-dir", help="a folder to search first, as `run`/`train --data-dir` do")
    p.set_defaults(fn=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench" and args.suite == "list":
        from .engine import bench  # noqa: F401

        print("\n".join(registry.list_benches()))
        return 0
    try:
        args.fn(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        if type(e).__name__ not in _USER_ERRORS and not isinstance(e, ValueError):
            raise
        print(f"archzoo: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("archzoo: interrupted", file=sys.stderr)
        return 130
    return 0


_USER_ERRORS = {"DatasetUnavailable", "CheckpointError", "FileNotFoundError", "UnknownNameError"}

if __name__ == "__main__":
    sys.exit(main())
