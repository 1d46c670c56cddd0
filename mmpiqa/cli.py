"""The `mmpiqa` command. Each sub-command parses its arguments here and calls the library."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import mmpiqa
from mmpiqa.errors import InputError

DEBUG_ENV = "MMPIQA_DEBUG"


def cmd_info(args: argparse.Namespace) -> int:
    import open_clip
    import torch

    from mmpiqa.model.backbone import OFFLINE_CONFIGS, cached_weights, hub_offline, registry_name

    print(
        f"mmpiqa {mmpiqa.__version__}  python {platform.python_version()}  torch {torch.__version__}  "
        f"open_clip {open_clip.__version__}"
    )
    if torch.cuda.is_available():
        print(f"device: cuda ({torch.cuda.get_device_name(0)}), bf16 {torch.cuda.is_bf16_supported()}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads); no CUDA device")
    print(f"HF_HUB_OFFLINE: {'set (no downloads)' if hub_offline() else 'not set'}")
    print("offline configs (random weights unless pretrained='synthetic': the teaching CLIP, shipped):")
    for short, name in OFFLINE_CONFIGS.items():
        cfg = open_clip.get_model_config(name)
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        print(
            f"  {short:6s} image {v['image_size']}px patch {v['patch_size']} width {v['width']} x{v['layers']}; "
            f"text width {t['width']} x{t['layers']}; embed {cfg['embed_dim']}"
        )
    for name, tag in args.model or [("ViT-B-16", "openai"), ("ViT-B-32", "openai")]:
        if tag not in open_clip.list_pretrained_tags_by_model(registry_name(name)):
            print(
                f"weights {name} / {tag}: unknown tag; known: "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(registry_name(name))) or 'none'}"
            )
            continue
        found = cached_weights(name, tag)
        print(f"weights {name} / {tag}: {'cached at ' + str(found) if found else 'not cached'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mmpiqa.runs.demo import format_table, run_demo
    from mmpiqa.workbook.plots import demo_figures

    # default: the teaching CLIP; `--pretrained none` gives the random-weight contrast
    pretrained = args.pretrained if args.pretrained is not None or args.backbone else "synthetic"
    result = run_demo(
        args.out,
        backbone=args.backbone or "tiny",
        pretrained=pretrained or None,
        epochs=args.epochs,
        size=args.size,
        splits=args.splits,
        overrides=args.set or (),
        progress=not args.quiet,
    )
    print()
    print(format_table(result.table))
    figures = demo_figures(result.runs, Path(args.out) / "figures")
    print(f"\nrun folders under {args.out}; figures: {', '.join(str(p) for p in figures)}")
    return 0


def _run_config(args: argparse.Namespace):
    from mmpiqa.config import RunConfig

    config = RunConfig.load(args.config) if args.config else RunConfig()
    overrides = list(args.set or [])
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    if args.pretrained is not None:
        overrides.append(f"model.pretrained={args.pretrained or 'null'}")
    return config.with_overrides(overrides) if overrides else config


def cmd_train(args: argparse.Namespace) -> int:
    from mmpiqa.runs.demo import format_table
    from mmpiqa.runs.experiment import results_table, run
    from mmpiqa.runs.folder import RunFolder
    from mmpiqa.train.trainer import world_info

    config = _run_config(args)
    result = run(config, args.out, splits=args.splits, progress=not args.quiet)
    if world_info()[0] == 0:  # under torchrun, one table
        if result.metrics.get("skipped_images"):
            listed = RunFolder(result.folder).skipped_file
            print(f"skipped {result.metrics['skipped_images']} unreadable image(s); listed in {listed}")
        print(format_table(results_table([result])))
        print(f"run folder: {result.folder}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from mmpiqa.config import DataConfig
    from mmpiqa.runs.experiment import evaluate_run

    data = DataConfig(
        dataset=args.dataset, root=args.root, size=args.size, skip_unreadable=args.skip_unreadable
    )
    result = evaluate_run(args.run, data, progress=not args.quiet)
    if result["skipped_images"]:
        print(f"skipped {result['skipped_images']} unreadable image(s) (--skip-unreadable)")
    s = result["summary"]
    print(
        f"{args.run} on {args.dataset} ({result['n_images']} images, {len(result['per_split'])} split model(s)):"
    )
    for metric in ("srcc", "plcc"):
        print(
            f"  {metric.upper()} {s[metric]['median']:.3f} [{s[metric]['ci_low']:.3f}, {s[metric]['ci_high']:.3f}]"
        )
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mmpiqa.runs.predict import format_predictions, predict_images

    rows = predict_images(args.run, args.images, split=args.split)
    print(format_predictions(rows, args.format))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mmpiqa.config import ConfigError, parse_assignments, read_config_file
    from mmpiqa.model.checkpoint import read_json
    from mmpiqa.runs.shipping import check_target, ship
    from mmpiqa.train.pretrain import PretrainConfig, pretrain

    # the file and the --set values are checked together: a --set can repair what the file alone gets wrong
    data = read_config_file(args.config, "recipe file") if args.config else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: a recipe file is a mapping of recipe fields, e.g. steps: 3000")
    data.update(parse_assignments(args.set or [], form="field"))  # a recipe has no sections
    config = PretrainConfig.from_dict(data, where="pretrain recipe")
    if args.ship and args.stop_after is not None and args.stop_after < config.steps:
        raise ConfigError(
            f"--ship with --stop-after {args.stop_after}: only a run that reaches its last step "
            f"({config.steps}) can be shipped; drop one of the two"
        )
    if args.ship:
        check_target(args.ship, config)
    result = pretrain(
        config, args.out, stop_after=args.stop_after, progress=not args.quiet, device=args.device
    )
    last = result.history[-1] if result.history else {}
    print(
        f"{result.steps_done}/{config.steps} steps in {result.folder}; last step: in-batch retrieval accuracy "
        f"{last.get('retrieval_acc', float('nan')):.2f}, contrastive loss {last.get('contrastive', float('nan')):.3f}"
    )
    if result.weights is not None:
        provenance = read_json(result.folder / "provenance.json")
        print(f"weights: {result.weights} (sha256 {provenance['sha256'][:12]}); provenance beside them")
        if args.ship:
            print(f"shipped into the package: {ship(result.folder, args.ship)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from mmpiqa.config import ConfigError
    from mmpiqa.runs.sweep import LocalPool, SubmititBackend, load_sweep, run_sweep, summary_table

    sweep = load_sweep(args.grid)
    if args.summary:
        table = summary_table(sweep, args.out)
    else:
        if args.backend == "submitit":
            options = {}
            for item in args.slurm or []:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"--slurm {item!r}: expected KEY=VALUE, e.g. account=myproject")
                options[key.strip()] = yaml.safe_load(value)
            backend = SubmititBackend(
                log_dir=args.log_dir or Path(args.out) / "submitit",
                executor=args.executor,
                partition=args.partition,
                gpus_per_job=args.gpus_per_job,
                cpus_per_job=args.cpus_per_job,
                time=args.time,
                array_parallelism=args.array_parallelism,
                slurm_options=options,
                wait=not args.no_wait,
            )
        else:
            backend = LocalPool(args.workers)
        table = run_sweep(sweep, args.out, backend=backend)
    view = table.drop(columns=["folder"])
    view.loc[view["status"].isin(["done", "skipped"]), "log"] = ""  # logs only where something went wrong
    print()
    print(view.to_string(index=False))
    return 0 if not table["status"].str.startswith(("failed", "missing")).any() else 1


def cmd_data_list(args: argparse.Namespace) -> int:
    from mmpiqa.data.commands import list_text

    print(list_text())
    return 0


def cmd_data_card(args: argparse.Namespace) -> int:
    from mmpiqa.data.commands import card_text

    print(card_text(args.name), end="")
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    """0: the download is complete and sane; 1: it has problems (listed); 2: it cannot be read at all."""
    from mmpiqa.config import parse_assignments
    from mmpiqa.data.commands import verify

    options = {}
    if args.name == "metacsv":
        options = dict(
            csv=args.csv,
            image_root=args.image_root,
            name_col=args.name_col,
            mos_col=args.mos_col,
            mos_range=tuple(args.mos_range) if args.mos_range else None,
            higher_is_better=False if args.lower_is_better else None,  # None: a MOS (a dmos column warns)
        )
    options.update(parse_assignments(args.option or [], flag="--option", form="key"))
    report, problems = verify(
        args.name,
        args.root,
        check_images=args.check_images,
        skip_unreadable=args.skip_unreadable,
        **options,
    )
    print(report)
    return 1 if problems else 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _model_tag(text: str) -> tuple[str, str]:
    name, _, tag = text.partition(":")
    if not tag:
        raise argparse.ArgumentTypeError(f"expected MODEL:TAG such as ViT-B-16:openai, got {text!r}")
    return name, tag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmpiqa", description="Multi-modal prompt learning on blind image quality assessment (MP-IQE)."
    )
    parser.add_argument("--version", action="version", version=f"mmpiqa {mmpiqa.__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of errors in your input too (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, device, offline backbones and which weights are cached")
    info.add_argument(
        "--model",
        type=_model_tag,
        action="append",
        default=None,
        metavar="MODEL:TAG",
        help="check whether these weights are cached (default: ViT-B-16:openai and ViT-B-32:openai)",
    )
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser(
        "demo", help="the main job: train MP-IQE offline on the embedded benchmark, vs zero-shot"
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the run folders and figures")
    demo.add_argument("--epochs", type=_positive, default=3)
    demo.add_argument(
        "--splits",
        type=_positive,
        default=1,
        help="content-disjoint splits to run, each testing other photos",
    )
    demo.add_argument(
        "--size", default="default", choices=["small", "default", "full"], help="embedded benchmark size"
    )
    _set_arg(
        demo,
        "a field of the trained MP-IQE arm, e.g. --set model.visual_depth=3 --set train.lr=0.01 (the zero-shot "
        "baselines are made from it, so they share its backbone, data and splits)",
    )
    _backbone_args(demo)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train and evaluate one RunConfig over its splits")
    train.add_argument("--config", help="a RunConfig file (YAML or JSON); default: the built-in defaults")
    _set_arg(train, "a field, e.g. --set model.visual_depth=3 --set train.epochs=10")
    train.add_argument("--out", default="runs")
    train.add_argument("--splits", type=_positive, default=None, help="run only the first N splits")
    _backbone_args(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a finished run on (another) dataset")
    evaluate.add_argument("--run", required=True, help="a run folder")
    evaluate.add_argument("--dataset", required=True, help="a dataset name (mmpiqa data list)")
    evaluate.add_argument("--root", default=None, help="the dataset's folder (not needed for 'embedded')")
    evaluate.add_argument("--size", default="default", help="embedded benchmark size")
    evaluate.add_argument("--json", action="store_true", help="also print the full result as JSON")
    evaluate.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out unreadable images (counted) instead of failing",
    )
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    pred = sub.add_parser("predict", help="score image files with a trained run")
    pred.add_argument("--run", required=True, help="a run folder")
    pred.add_argument("images", nargs="+", help="image files")
    pred.add_argument("--split", type=int, default=0, help="which split's prompts to use")
    pred.add_argument("--format", choices=["csv", "json"], default="csv")
    pred.set_defaults(func=cmd_predict)

    pre = sub.add_parser(
        "pretrain", help="pretrain the offline teaching CLIP on the procedural captioned corpus (resumable)"
    )
    pre.add_argument("--out", default="runs/pretrain", help="the run's folder; run again to resume")
    pre.add_argument("--config", help="a recipe file (YAML or JSON); default: the built-in recipe")
    pre.add_argument(
        "--set", action="append", metavar="FIELD=VALUE", help="override a recipe field, e.g. --set steps=20"
    )
    pre.add_argument(
        "--stop-after", type=int, default=None, help="pause after this step of the recipe (resume later)"
    )
    pre.add_argument(
        "--ship",
        metavar="STEM",
        help="when done, copy the weights into the package as mmpiqa/weights/STEM.* (e.g. tiny-synthetic)",
    )
    pre.add_argument("--device", default="cpu", help="where the model trains: cpu or cuda")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=cmd_pretrain)

    sweep = sub.add_parser("sweep", help="run a grid of configs (resumable; failures reported, not fatal)")
    sweep.add_argument("--grid", required=True, help="a grid file (see mmpiqa.runs.sweep)")
    sweep.add_argument("--out", default="runs")
    sweep.add_argument(
        "--backend",
        choices=["local", "submitit"],
        default="local",
        help="'local': a pool of worker processes here; 'submitit': one job per point (Slurm, or --executor local)",
    )
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes (--backend local)")
    cluster = sweep.add_argument_group("submitit backend")
    cluster.add_argument(
        "--executor", choices=["slurm", "local"], default="slurm", help="Slurm jobs, or local processes"
    )
    cluster.add_argument("--partition", default=None, help="Slurm partition")
    cluster.add_argument("--gpus-per-job", type=int, default=1, help="GPUs of each job (one grid point)")
    cluster.add_argument(
        "--cpus-per-job", type=int, default=None, help="CPU cores of each job (data loading)"
    )
    cluster.add_argument(
        "--time", type=int, default=240, help="minutes per job; a timed-out or pre-empted job is requeued"
    )
    cluster.add_argument("--array-parallelism", type=int, default=None, help="at most this many jobs at once")
    cluster.add_argument(
        "--log-dir", default=None, help="submitit's job files and logs (default <out>/submitit)"
    )
    cluster.add_argument(
        "--slurm",
        action="append",
        metavar="KEY=VALUE",
        help="any other submitit Slurm parameter, e.g. --slurm account=proj --slurm qos=high --slurm mem_gb=64",
    )
    cluster.add_argument(
        "--no-wait", action="store_true", help="submit and return; run the same command later to collect"
    )
    sweep.add_argument(
        "--summary", action="store_true", help="only print the table read from the run folders; run nothing"
    )
    sweep.set_defaults(func=cmd_sweep)

    _data_parser(sub)
    return parser


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from mmpiqa.data.info import DATASETS

    data = sub.add_parser("data", help="IQA datasets: list them, verify a download, print a data card")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="{list,verify,card}")

    p = commands.add_parser(
        "list", help="the datasets this version reads, with scale, licence and download page"
    )
    p.set_defaults(func=cmd_data_list)

    p = commands.add_parser(
        "verify", help="read a download and report counts, missing files, scores, distortions"
    )
    p.add_argument("name", choices=sorted(DATASETS), help="dataset name (see `mmpiqa data list`)")
    p.add_argument("--root", type=Path, default=None, help="the unpacked download (or the meta CSV file)")
    p.add_argument(
        "--check-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode every image to find truncated/corrupt files (default: on; --no-check-images is quicker)",
    )
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="accept missing/unreadable images: report them as skipped instead of failing",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a reader option, as data.reader_options in a run config (repeatable; `mmpiqa data card NAME` "
        "lists them), e.g. --option size=small for the embedded benchmark",
    )
    meta = p.add_argument_group("metacsv options")
    meta.add_argument("--csv", type=Path, default=None, help="the CSV, when --root is the image folder")
    meta.add_argument(
        "--image-root", type=Path, default=None, help="folder the CSV's image names are relative to"
    )
    meta.add_argument("--name-col", default=None, help="column with the image names")
    meta.add_argument("--mos-col", default=None, help="column with the scores")
    meta.add_argument("--mos-range", type=float, nargs=2, metavar=("LO", "HI"), help="published score range")
    meta.add_argument("--lower-is-better", action="store_true", help="the score is a DMOS (it is flipped)")
    p.set_defaults(func=cmd_data_verify)

    p = commands.add_parser("card", help="print a dataset's data card (markdown)")
    p.add_argument("name", choices=sorted(DATASETS), help="dataset name")
    p.set_defaults(func=cmd_data_card)


def _set_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """`--set SECTION.FIELD=VALUE` (repeatable), read by `RunConfig.with_overrides`."""
    parser.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help=f"override {what}")


def _pretrained(text: str) -> str:
    """'none' (any case) means random weights: '' is what the library reads as 'no pretrained weights'."""
    return "" if text.strip().lower() == "none" else text


def _backbone_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone", default=None, help="'tiny' (offline) or an open_clip model, e.g. ViT-B-16"
    )
    parser.add_argument(
        "--pretrained",
        type=_pretrained,
        default=None,
        help="an open_clip tag (openai), 'synthetic' (tiny's teaching weights), a local checkpoint path, "
        "or 'none' for random weights",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command. An error in the user's input (`mmpiqa.errors.InputError`: config, data, weights,
    checkpoint, output folder) prints one ``error: ...`` line and exits 2; --debug or MMPIQA_DEBUG=1 shows its
    traceback. Anything else is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        if args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
