"""The `archzoo` command: list | info | models | run | train | bench | report | demo | data.

Bad input (an unknown name, a wrong value, missing or corrupt data, a device this machine lacks) prints one line
and exits 2; arguments are checked before anything is printed or loaded. Output piped into a reader that stops
early (`archzoo list | head`) ends quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__, registry

EXIT_USAGE = 2
TEXT_MODELS = ("reformer_tiny", "linear_transformer_lm")      # causal token models, named when text does not fit
IMAGE_DATA = "digits, fashion-mnist, mnist, cifar10 or an image folder"
TOKEN_DATA = "pydoc, a .txt file, or a task (copy, duplication, associative_recall, listops, retrieval)"


def _parse_value(text: str):
    """`--set key=value` values: JSON when it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str] | None, flag: str = "--set") -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def _show(overrides: dict) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "its defaults"


def _device(name: str):
    """`--device` as a torch.device that this machine has; otherwise one line saying what it has."""
    import torch

    from .engine.runtime import resolve_device

    device = resolve_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            has = "this torch is built without CUDA" if torch.version.cuda is None else f"{count} CUDA device(s) here"
            raise ValueError(f"--device {name}: no such CUDA device ({has}); use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device


def _out_dir(path: str | None) -> Path | None:
    """`--out`: a folder, or a path that does not exist yet."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"--out {path}: exists and is not a folder")
    return None if path is None else Path(path)


def _same_kind(value, example) -> bool:
    """Whether a `--set` value has the JSON kind of a config value (ints pass for floats, lists for tuples)."""
    if isinstance(example, bool) or isinstance(value, bool):
        return isinstance(example, bool) and isinstance(value, bool)
    if isinstance(example, float):
        return isinstance(value, (int, float))
    if isinstance(example, (list, tuple)):
        return isinstance(value, (list, tuple)) and (not example or all(_same_kind(v, example[0]) for v in value))
    return isinstance(value, type(example))


def _claim_overrides(slug: str, names: list[str], overrides: dict) -> dict:
    """`run --set`: each key must be a config key of every claim run, its value of the kind the claim's configs
    (quick, demo, full) give it; a list becomes a tuple where the configs hold tuples."""
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list",
             list: "a list", dict: "an object"}
    for name in names:
        c = registry.get_claim(slug, name)
        configs = [cfg for cfg in (c.quick, c.demo, c.full) if cfg]
        keys = sorted(set().union(*configs))
        for key, value in overrides.items():
            if key not in keys:
                raise ValueError(f"--set {key}: not a config key of {slug}.{name} (its keys: {', '.join(keys)})")
            examples = [cfg[key] for cfg in configs if key in cfg and cfg[key] is not None]
            nullable = len(examples) < sum(key in cfg for cfg in configs)
            if examples and not (value is None and nullable) and not any(_same_kind(value, e) for e in examples):
                raise ValueError(f"--set {key}={json.dumps(value)}: {slug}.{name} takes "
                                 f"{kinds.get(type(examples[0]), type(examples[0]).__name__)} there "
                                 f"(e.g. {json.dumps(examples[0])})")
            if isinstance(value, list) and any(isinstance(e, tuple) for e in examples):
                overrides[key] = tuple(value)
    return overrides


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


def cmd_models(args) -> int:
    """The table of presets; a preset that cannot be counted is one line on stderr (and exit status 1)."""
    names = registry.list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; see `archzoo models`")
    rows, failed = [], []
    for n in names:
        try:
            params = f"{count_parameters(n):,}"
        except Exception as e:          # a defect of one preset must not hide the others: report it in one line
            params = "error"
            failed.append(f"archzoo: {n}: cannot be built on the meta device ({type(e).__name__}: {_first_line(e)})")
        rows.append({"model": n, "paper": registry.model_paper(n), "params": params})
    print(_table(rows, ["model", "paper", "params"]))
    sys.stdout.flush()
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


def cmd_run(args) -> None:
    from .engine.claims import run_claim

    paper = registry.get_paper(args.slug)
    if not paper.claims:
        raise ValueError(f"paper {args.slug!r} has no claims yet (status: {paper.status})")
    names = [args.claim] if args.claim else list(paper.claims)
    for name in names:
        registry.get_claim(args.slug, name)  # fail fast on a bad --claim
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    mode = "quick" if args.quick else "full"
    overrides = _claim_overrides(args.slug, names, _parse_sets(args.set))
    out = _out_dir(args.out)
    for name in names:
        print(f"== {args.slug}.{name} ({mode})")
        record = run_claim(args.slug, name, mode, seeds=args.seeds, device=args.device, data_dir=args.data_dir,
                           overrides=overrides, out_dir=out)
        _print_record(record)


def _print_record(record: dict) -> None:
    from .engine.claims import verdict

    print(f"   {verdict(record)}  {record['criterion']}")
    print(f"   wrote {record['path']} ({record['wall_time_s']} s)")


def cmd_train(args) -> None:
    registry.model_paper(args.model)  # fail fast on an unknown model, before loading data
    import torch

    from .engine import distributed
    from .engine.train import check_train_args, evaluate, train
    from .fileio import replaceable_dir
    from .hub import save_pretrained

    check_train_args(steps=args.steps, batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
                     grad_clip=args.grad_clip, warmup_steps=args.warmup)
    device = _device(args.device)
    out = Path(args.out or f"runs/train/{args.model}-{args.data.replace('/', '_')}")
    replaceable_dir(out)                        # save_pretrained replaces the folder at the end: check it first
    overrides = _parse_sets(args.set)
    preset = _build(args.model, overrides, meta=True)          # checks --set before any data is loaded
    data = _load_data(args)
    train_set, eval_set, split = _fit_to_data(args, preset, data, overrides)
    model = _build(args.model, overrides)
    result = train(model, train_set, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                   optimizer=args.optimizer, weight_decay=args.weight_decay, warmup_steps=args.warmup,
                   grad_clip=args.grad_clip, seed=args.seed, device=device, amp=args.amp, compile=args.compile,
                   log_path=out / "metrics.jsonl", checkpoint_dir=out / "checkpoints",
                   checkpoint_every=args.checkpoint_every, resume=args.resume)
    if not distributed.is_main_process():          # under torchrun, rank 0 evaluates and writes
        return
    metrics = {"final_train_loss": result.final_loss}
    if eval_set is not None:
        metrics.update({f"{split}_{k}": v for k, v in evaluate(model, eval_set, device=device).items()})
    model.to(torch.device("cpu"))
    save_pretrained(model, out)
    print(json.dumps(metrics, indent=2))
    print(f"saved {out}/ (config.json, model.safetensors); load with archzoo.from_pretrained({str(out)!r})")


def _build(name: str, overrides: dict, meta: bool = False):
    """`create_model(name, **overrides)`, on the meta device if `meta` (None where the preset cannot be built
    there); arguments it does not take, or values of the wrong type, are one line naming them."""
    import torch

    try:
        if not meta:
            return registry.create_model(name, **overrides)
        with torch.device("meta"):
            return registry.create_model(name, **overrides)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} cannot be built with {_show(overrides)}: {_first_line(e)}") from None
    except RuntimeError:
        if meta:
            return None
        raise


def _takes(name: str, overrides: dict, key: str, value) -> bool:
    """Whether the preset builds with `key=value` added (on the meta device)."""
    try:
        _build(name, {**overrides, key: value}, meta=True)
    except ValueError:
        return False
    return True


def _load_data(args):
    from .data import load_dataset

    return load_dataset(args.data, data_dir=args.data_dir, **_parse_sets(args.data_set, "--data-set"))


def _fit_to_data(args, preset, data, overrides: dict) -> tuple:
    """(training set, evaluation set or None, its split name) for `data`, after checking that the model takes
    that kind of data; sets `num_classes` and `in_chans` (images, tasks) or the text model's arguments in
    `overrides` where the preset takes them and `--set` did not."""
    from .data import ImageData, TextData

    takes = ("images" if hasattr(preset, "default_input_size") else
             "tokens" if hasattr(preset, "vocab_size") else None)
    gives = "images" if isinstance(data, ImageData) else "text" if isinstance(data, TextData) else "tokens"
    if takes == "images" and gives != "images":
        kind = "text" if gives == "text" else "a token sequence task"
        raise ValueError(f"{args.model} is an image model (input {tuple(preset.default_input_size)}) and "
                         f"--data {args.data} is {kind}: train it on {IMAGE_DATA}, or a sequence model on {kind}")
    if takes == "tokens" and gives == "images":
        raise ValueError(f"{args.model} is a sequence model (token ids (B, N)) and --data {args.data} gives "
                         f"images: train it on {TOKEN_DATA}, or an image model on {args.data}")
    if gives == "text":
        return (*_fit_to_text(args, data, overrides), "val")
    for key in ("num_classes", "in_chans"):
        if hasattr(data, key) and key not in overrides and _takes(args.model, overrides, key, getattr(data, key)):
            overrides[key] = getattr(data, key)
    return data.train, getattr(data, "test", None), "test"


def _fit_to_text(args, data, overrides: dict) -> tuple:
    """A causal next-character model of `data` (vocab_size and num_classes = its characters, per_token and
    causal where the preset takes them), trained on windows of --block-size characters."""
    vocab = data.tokenizer.vocab_size
    for key, value in (("vocab_size", vocab), ("num_classes", vocab), ("per_token", True), ("causal", True)):
        if key not in overrides and _takes(args.model, overrides, key, value):
            overrides[key] = value
    preset = _build(args.model, overrides, meta=True)
    if preset is not None:
        why = ("it attends both ways (causal=False), so it would see the character it must predict"
               if not getattr(preset, "causal", False) else
               "it gives one label per sequence (per_token=False)" if not getattr(preset, "per_token", True) else
               f"its vocabulary holds {preset.vocab_size} tokens, not the {vocab} characters of {args.data}"
               if getattr(preset, "vocab_size", vocab) < vocab or getattr(preset, "num_classes", vocab) != vocab
               else None)
        if why:
            raise ValueError(f"{args.model} cannot be a next-character model: {why}; text trains a causal "
                             f"sequence model such as {' or '.join(TEXT_MODELS)}")
        if args.block_size > getattr(preset, "max_len", args.block_size):
            raise ValueError(f"--block-size {args.block_size}: {args.model} takes at most {preset.max_len} tokens")
    return data.windows("train", args.block_size), data.windows("val", args.block_size)


def cmd_bench(args) -> None:
    from .engine import bench  # noqa: F401  (registers the generic suites)
    from .registry import repo_root

    if args.suite == "list":
        print("\n".join(registry.list_benches()))
        return

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


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archzoo", description="The deep-learning architectures course, runnable.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    p.add_argument("--data", required=True, help="images (digits, fashion-mnist, mnist, cifar10, a folder) for image "
                   "models; text (pydoc, a .txt file) or a task (copy, listops, ...) for sequence models")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--data-set", action="append", metavar="KEY=VALUE", help="dataset option, e.g. length=512")
    p.add_argument("--block-size", type=int, default=128, help="text data: characters per training window")
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
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (none: an error)")
    p.add_argument("--out", help="output folder (default runs/train/<model>-<data>)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("bench", help="time and memory benchmarks (writes docs/benchmarks.md)")
    p.add_argument("suite", help="a suite name (see `archzoo bench list`) or 'all'")
    p.add_argument("--pattern", default="*", help="which models or methods (fnmatch; models: several separated by |)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--length", type=int, default=None, help="sequence length of `bench tasks` (default 256)")
    p.add_argument("--family", default=None, help="`bench models`: only this family's presets (its own section)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="`bench attention` and `bench models`: run in this dtype (default float32); a run off the CPU "
                        "or in another dtype writes its own section")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="`bench models`: the device's peak TFLOP/s for the MFU column (default: the datasheet peak "
                        "of a known GPU; none on a CPU)")
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
    try:
        if getattr(args, "device", None) is not None:
            _device(args.device)                    # a device this machine lacks: one line, before any output
        status = args.fn(args) or 0
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader stopped early (`archzoo list | head`): end quietly, as Python's documentation of
        # SIGPIPE recommends, pointing stdout at devnull so that the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, FloatingPointError) as e:
        return _usage_error(e)
    except RuntimeError as e:
        if type(e).__name__ not in _USER_ERRORS:
            raise
        return _usage_error(e)
    except KeyboardInterrupt:
        print("archzoo: interrupted", file=sys.stderr)
        return 130


def _usage_error(e: BaseException) -> int:
    print(f"archzoo: error: {_first_line(e)}", file=sys.stderr)
    return EXIT_USAGE


_USER_ERRORS = {"DatasetUnavailable"}          # RuntimeErrors that are the user's to fix (the others are bugs)

if __name__ == "__main__":
    sys.exit(main())
