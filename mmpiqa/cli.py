"""The `mmpiqa` command. Each sub-command parses its arguments here and calls the library."""

from __future__ import annotations

import argparse
import platform
import sys

import mmpiqa


def cmd_info(args: argparse.Namespace) -> int:
    import open_clip
    import torch

    from mmpiqa.backbone import OFFLINE_CONFIGS, cached_weights, hub_offline, registry_name

    print(
        f"mmpiqa {mmpiqa.__version__}  python {platform.python_version()}  torch {torch.__version__}  "
        f"open_clip {open_clip.__version__}"
    )
    if torch.cuda.is_available():
        print(f"device: cuda ({torch.cuda.get_device_name(0)}), bf16 {torch.cuda.is_bf16_supported()}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads); no CUDA device")
    print(f"HF_HUB_OFFLINE: {'set (no downloads)' if hub_offline() else 'not set'}")
    print("offline backbones (random weights, shipped with the package):")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
