"""Benchmarks of mmpiqa on this machine: one table, every figure a ratio measured in the same run.

    python benchmarks/run.py                      # all items on the CPU (<= 15 min on 2 cores)
    python benchmarks/run.py --quick              # fewer cases and repeats (~5 min on 2 cores)
    python benchmarks/run.py --device cuda        # bf16 autocast, GPU batch sizes (benchmarks/gpu.sh)
    python benchmarks/run.py --only gemm,train    # some items only (gemm always runs: it is the denominator)

Items: gemm (the machine's own matmul ceiling), train (training step: images/s and achieved FLOP/s as a fraction
of the ceiling), text (text pass vs batch size; dual 25-prompt branches vs a LIQE-style joint 495-prompt set),
cache (epoch time of a text-only variant with and without the frozen-feature cache), infer (images/s with one
centre crop vs n grid crops, peak memory), eval (JPEG files -> scores end to end, and decode alone, as a
fraction of the model-only rate), fastpath (the training-time speed-ups of mmpiqa/model/fast.py switched
off one by one; full runs only). benchmarks/README.md says what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the Trainer's progress bars (read when tqdm is imported)

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py next to this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # mmpiqa from this checkout when not installed

import evaluation
import harness
from harness import (
    Others,
    PeakMemory,
    count_flops,
    gemm_call,
    gemm_rate,
    machine,
    measure,
    measure_interleaved,
)

# mmpiqa (and open_clip) are imported by the items that use them: `--only gemm` starts in a second.

ITEMS = ("gemm", "train", "text", "cache", "infer", "eval", "fastpath")
SKIPPED_WHEN_QUICK = ("fastpath",)
TARGETS = {"train": 0.60, "train_cuda": 0.40, "text": 15.0, "cache": 10.0}
MARKER = "<!-- Everything below this line is written by hand and kept when run.py rewrites the file. -->"

# Sizes per device. Batch sizes fit 2 CPU cores (seconds per step) and one large GPU.
PLAN = {
    "cpu": {
        "gemm": [2048, 3072, 4096],
        "train": {"tiny": 32, "ViT-B-32": 16, "ViT-B-16": 8},
        "text_batches": [4, 8, 16, 32],
        "cache_images": 512,
        "infer": {"tiny": 32, "ViT-B-16": 8},
        "repeats": 3,
    },
    "cuda": {
        "gemm": [4096, 8192],
        "train": {"tiny": 256, "ViT-B-32": 256, "ViT-B-16": 128},
        "text_batches": [32, 128, 512],
        "cache_images": 4096,
        "infer": {"tiny": 512, "ViT-B-16": 128},
        "repeats": 5,
    },
}
QUICK = {"cpu": {"gemm": [2048, 3072], "text_batches": [4, 16], "repeats": 2}}
DEPTHS = (0, 1, -1)
GRID_CROPS = 3  # DataConfig.test_crops default


class Bench:
    """Holds the plan, the device, the measured ceiling and the rows of the table."""

    def __init__(self, device: torch.device, quick: bool) -> None:
        self.device, self.quick = device, quick
        plan = dict(PLAN[device.type])
        if quick:
            plan.update(QUICK.get(device.type, {"repeats": 2}))
        self.plan = plan
        self.repeats = plan["repeats"]
        self.amp = device.type == "cuda"  # bf16 autocast on CUDA (as the Trainer does), fp32 on the CPU
        self.ceiling = math.nan  # FLOP/s of the dtype the steps run in (fp32 CPU, bf16 CUDA)
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self._backbones: dict[str, tuple] = {}

    # --- helpers ------------------------------------------------------------------------------------------
    def row(self, item: str, case: str, value: str, ratio: str = "", target: str = "", timing=None) -> None:
        load = f"{timing.load:.2f} / {timing.others:.2f}" if timing is not None else ""
        self.rows.append(dict(item=item, case=case, value=value, ratio=ratio, target=target, load=load))
        print(f"  {item:<6} {case:<44} {value:<34} {ratio:<18} {target:<10} {load}", flush=True)

    def autocast(self):
        from mmpiqa.train.trainer import autocast

        return autocast(self.device)

    def backbone(self, name: str) -> tuple:
        from mmpiqa.model.backbone import load_backbone, tokenizer_for

        if name not in self._backbones:
            self._backbones.clear()  # one large backbone in memory at a time
            clip, identity = load_backbone(name, None, seed=0, device=self.device)
            self._backbones[name] = (clip, identity, tokenizer_for(name))
        return self._backbones[name]

    def model(self, name: str, **config):
        from mmpiqa.config import ModelConfig
        from mmpiqa.model.prompted_clip import PromptedCLIP

        clip, identity, tokenizer = self.backbone(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            model = PromptedCLIP(
                ModelConfig(backbone=name, pretrained=None, **config), clip, tokenizer, identity
            )
        return model.to(self.device)

    def images(self, n: int, size: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(n)
        return torch.rand(n, 3, size, size, generator=generator).to(self.device)

    def train_step(self, model, batch: int):
        """The Trainer's own training step (`Trainer.step`: forward, loss, backward, clip, AdamW) on `batch`
        random images, already on the device."""
        from torch.utils.data import default_collate

        from mmpiqa.config import TrainConfig
        from mmpiqa.train.trainer import Trainer

        items = _RandomIQA(batch, crops=1, size=model.image_size)
        trainer = Trainer(model, TrainConfig(lr=1e-4), items, items, progress=False)
        labelled = default_collate([items[i] for i in range(batch)])
        labelled["image"] = labelled["image"].to(self.device)
        return lambda: trainer.step(labelled)

    # --- items --------------------------------------------------------------------------------------------
    def gemm(self) -> None:
        dtypes = [torch.float32] + ([torch.bfloat16] if self.device.type == "cuda" else [])
        for dtype in dtypes:
            best = 0.0
            for n in self.plan["gemm"]:
                rate, timing = gemm_rate(n, dtype, self.device, repeats=max(3, self.repeats))
                best = max(best, rate)
                self.row(
                    "gemm", f"{str(dtype)[6:]} matmul {n}x{n}", f"{rate / 1e9:,.1f} GFLOP/s", timing=timing
                )
            if dtype == (torch.bfloat16 if self.amp else torch.float32):
                self.ceiling = max(self.ceiling, best) if not math.isnan(self.ceiling) else best
        kind = "bf16" if self.amp else "fp32"
        self.row("gemm", f"ceiling ({kind}, best size)", f"{self.ceiling / 1e9:,.1f} GFLOP/s", "1.00")
        # timed in turn with the training steps (see `alongside`)
        self.local_gemm = gemm_call(
            self.plan["gemm"][min(1, len(self.plan["gemm"]) - 1)],
            torch.bfloat16 if self.amp else torch.float32,
            self.device,
        )

    def alongside(self, steps: list) -> tuple[float, list]:
        """Time `steps` in turn with a GEMM (G A B G A B ...): (the GEMM's FLOP/s, the steps' timings). The
        fraction of *this* GEMM rate is robust to a machine whose speed drifts during the run (a shared VM's
        does by 10-20 % over minutes even when no other process shows in the load figures)."""
        gemm, flops = self.local_gemm
        gemm()
        timings = measure_interleaved([gemm, *steps], self.device, repeats=self.repeats)
        return flops / timings[0].seconds, timings[1:]

    def recheck(self) -> None:
        """The ceiling again at the end: a figure far from the first says the machine changed during the run."""
        kind = torch.bfloat16 if self.amp else torch.float32
        rate, timing = gemm_rate(max(self.plan["gemm"][:2]), kind, self.device, repeats=3)
        self.row(
            "gemm",
            f"ceiling re-measured at the end ({max(self.plan['gemm'][:2])})",
            f"{rate / 1e9:,.1f} GFLOP/s",
            f"{rate / self.ceiling:.2f}",
            timing=timing,
        )

    def train(self) -> None:
        for name, batch in self.plan["train"].items():
            for depth in DEPTHS:
                model = self.model(name, visual_depth=depth)
                step = self.train_step(model, batch)
                flops = count_flops(step)  # also the warm-up step
                rate, (timing,) = self.alongside([step])
                achieved = flops / timing.seconds
                label = {0: "0 (text+head only)", 1: "1 (shallow)", -1: "all (deep)"}[depth]
                target = ""
                if name == "ViT-B-16" and depth == -1:
                    target = f">= {TARGETS['train_cuda' if self.amp else 'train']:.0%}"
                self.row(
                    "train",
                    f"{name} b{batch} visual depth {label}",
                    f"{batch / timing.seconds:,.2f} img/s, {flops / 1e9 / batch:,.1f} GFLOP/img",
                    f"{achieved / rate:.0%} of GEMM ({achieved / self.ceiling:.0%} of ceiling)",
                    target,
                    timing,
                )
                del model, step
        self.profile()

    def profile(self) -> None:
        """Where the time of one ViT-B-16 deep-prompt step goes, by kind of operation (torch.profiler)."""
        from torch.profiler import ProfilerActivity, profile

        batch = self.plan["train"]["ViT-B-16"]
        step = self.train_step(self.model("ViT-B-16", visual_depth=-1), batch)
        step()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
            torch.cuda.synchronize() if self.device.type == "cuda" else None
        groups = {
            "matmul (mm/addmm/bmm)": ("aten::mm", "aten::addmm", "aten::bmm"),
            "attention (SDPA)": (
                "aten::_scaled_dot_product",
                "aten::_flash_attention",
                "aten::_efficient_att",
            ),
            "layer norm": ("aten::native_layer_norm",),
            "GELU": ("aten::gelu",),
            "copies, cat, fill": ("aten::copy_", "aten::cat", "aten::fill_", "aten::zero_", "aten::clone"),
            "adds and other elementwise": ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::addc"),
        }
        use_cuda = self.device.type == "cuda"
        totals = dict.fromkeys(groups, 0.0)
        everything = 0.0
        for event in prof.key_averages():
            self_time = event.self_device_time_total if use_cuda else event.self_cpu_time_total
            everything += self_time
            for group, prefixes in groups.items():
                if event.key.startswith(prefixes):
                    totals[group] += self_time
                    break
        totals["everything else"] = everything - sum(totals.values())
        parts = ", ".join(f"{group} {t / everything:.0%}" for group, t in totals.items())
        self.notes.append(
            f"Profile of one ViT-B-16 deep-prompt step (b{batch}, self time by op kind): {parts}."
        )
        print(f"  profile: {parts}", flush=True)

    def text(self) -> None:
        from mmpiqa.labels import DISTORTION_GROUPS, QUALITY_LEVELS, SCENE_CLASSES
        from mmpiqa.model.prompts import TextPrompts, prompted_text_tower

        # (a) the text pass is once per step: its cost does not grow with the batch, the image side does
        model = self.model("ViT-B-32", visual_depth=-1)
        model.train()

        def text_pass(model=model) -> None:
            with self.autocast():
                features = model.text_features()
            sum(f.float().sum() for f in features.values()).backward()

        text_timing = measure(text_pass, self.device, repeats=self.repeats)
        for batch in self.plan["text_batches"]:
            timing = measure(self.train_step(model, batch), self.device, repeats=self.repeats)
            self.row(
                "text",
                f"ViT-B-32 deep, step b{batch}",
                f"step {timing.seconds:.3f} s, text {text_timing.seconds:.3f} s",
                f"text {text_timing.seconds / timing.seconds:.0%} of step",
                timing=timing,
            )
        # (b) dual branches (5 + 9 + 11 = 25 prompts) vs LIQE's joint quality x scene x distortion (495 prompts)
        clip, _, tokenizer = self.backbone("ViT-B-16")
        joint = [
            f"a {s} with {d} artifacts, which is of {q} quality"
            for s in SCENE_CLASSES
            for d in DISTORTION_GROUPS
            for q in QUALITY_LEVELS
        ]
        dual = model.config
        branches = {
            "dual": {b: [dual.template(b).format(c) for c in dual.classes(b)] for b in dual.branches},
            "joint": {"joint": joint},
        }
        del model
        times = {}
        for grad in (True, False) if not self.quick else (True,):
            for kind, phrases in branches.items():
                text = TextPrompts(clip, tokenizer, phrases, n_ctx=None, ctx_init="a photo of", depth=1)
                text = text.to(self.device)

                def run(text=text, grad=grad) -> None:
                    with torch.set_grad_enabled(grad), self.autocast():
                        features = prompted_text_tower(clip, text)
                    if grad:
                        features.float().sum().backward()

                repeats = self.repeats if kind == "dual" else 1  # the joint pass takes long on a CPU
                timing = measure(run, self.device, repeats=repeats, warmup=1 if kind == "dual" else 0)
                times[kind, grad] = timing.seconds
                n = sum(len(p) for p in phrases.values())
                mode = "training (fwd+bwd)" if grad else "evaluation (fwd)"
                ratio = ""
                target = ""
                if kind == "joint":
                    ratio = f"dual {times['joint', grad] / times['dual', grad]:.1f}x cheaper"
                    target = f">= {TARGETS['text']:.0f}x" if grad else ""
                self.row(
                    "text",
                    f"ViT-B-16 text tower, {n} prompts, {mode}",
                    f"{timing.seconds:.3f} s",
                    ratio,
                    target,
                    timing,
                )

    def cache(self) -> None:
        """Epochs of the real Trainer on in-memory random images: text-only variant, with and without cache."""
        from mmpiqa.config import TrainConfig
        from mmpiqa.train.trainer import Trainer

        n = self.plan["cache_images"]
        model_config = dict(visual_depth=0, text_depth=1, head="xattn")
        base = TrainConfig(
            epochs=3, batch_size=32 if self.device.type == "cpu" else 256, device=self.device.type, seed=0
        )
        size = self.model("tiny", **model_config).image_size
        train_set = _RandomIQA(n, crops=2, size=size)
        val_set = _RandomIQA(8, crops=1, size=size)
        epochs, steps = {}, {}
        for cached in (False, True):
            config = base.replace(feature_cache=cached, epochs=2 if (not cached and self.quick) else 3)
            stamps: list[float] = []
            model = self.model("tiny", **model_config)
            harness.wait_quiet(self.device)
            with tempfile.TemporaryDirectory() as folder, Others() as others:
                trainer = Trainer(
                    model,
                    config,
                    train_set,
                    val_set,
                    folder,
                    log=lambda _: None,
                    progress=False,
                    on_epoch=lambda _, stamps=stamps: stamps.append(time.perf_counter()),
                )
                trainer._train_epoch = _timed(trainer._train_epoch, train_times := [])  # the training part
                start = time.perf_counter()
                trainer.fit()
            durations = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
            kept = slice(1, None) if cached else slice(None)  # with the cache, epoch 1 also builds it
            epochs[cached] = statistics.median(durations[kept])
            steps[cached] = statistics.median(train_times[kept])
            note = f"; first epoch {durations[0]:.2f} s (builds the cache)" if cached else ""
            self.row(
                "cache",
                f"tiny text-only, {n} images x 2 crops, b{config.batch_size}, "
                f"{'with' if cached else 'without'} cache",
                f"epoch {epochs[cached]:.2f} s (training part {steps[cached]:.2f} s){note}",
                f"{epochs[False] / epochs[cached]:.1f}x faster (training part {steps[False] / steps[cached]:.1f}x)"
                if cached
                else "",
                f">= {TARGETS['cache']:.0f}x" if cached else "",
                others.timing,
            )

    def fastpath(self) -> None:
        """What each training-time fast path of mmpiqa/model/fast.py is worth: the same steps with it switched off
        (patched in this process only, restored after; open_clip is never touched)."""
        from mmpiqa.model import fast
        from mmpiqa.model.heads import CrossAttentionHead

        fast_blocks, fast_head = fast.run_block, CrossAttentionHead.forward

        def open_clip_blocks(block, x, attn_mask=None):
            return block(x, attn_mask=attn_mask)

        batch = self.plan["train"]["ViT-B-16"]
        model = self.model("ViT-B-16", visual_depth=-1)
        used = model.text_prompts.used_length
        variants = [
            ("open_clip block calls, full text context", open_clip_blocks, None),
            ("+ batch-first attention", fast_blocks, None),
            ("+ text padding dropped (current)", fast_blocks, used),
        ]

        def variant(step, blocks, length):
            def run() -> None:
                fast.run_block, model.text_prompts.used_length = blocks, length
                try:
                    step()
                finally:
                    fast.run_block, model.text_prompts.used_length = fast_blocks, used

            return run

        runs = [variant(self.train_step(model, batch), blocks, length) for _, blocks, length in variants]
        flops = [count_flops(run) for run in runs]  # also the warm-up steps
        rate, timings = self.alongside(runs)
        for (label, _, _), work, timing in zip(variants, flops, timings, strict=True):
            self.row(
                "fast",
                f"ViT-B-16 b{batch} deep step: {label}",
                f"{batch / timing.seconds:,.2f} img/s, {work / 1e9:,.0f} GFLOP/step",
                f"{work / timing.seconds / rate:.0%} of GEMM, {timings[0].seconds / timing.seconds:.2f}x",
                timing=timing,
            )
        # the xattn head: a cached text-only step is text pass + head only
        model = self.model("tiny", visual_depth=0)
        batch = self.plan["train"]["tiny"]
        with torch.no_grad(), self.autocast():
            pooled, tokens = model.image_features(
                self.images(batch, model.image_size), normalize=True, return_tokens=True
            )
        params = model.trainable_parameters()
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        model.train()

        def cached_step(forward) -> None:
            CrossAttentionHead.forward = forward
            try:
                with self.autocast():
                    out = model.readout(pooled, tokens, model.text_features())
                optimizer.zero_grad(set_to_none=True)
                (
                    out.score.float().pow(2).mean() + out.logits["scene"].float().logsumexp(-1).mean()
                ).backward()
                optimizer.step()
            finally:
                CrossAttentionHead.forward = fast_head

        heads = [
            ("nn.MultiheadAttention call", _head_as_before),
            ("keys and values folded (current)", fast_head),
        ]
        runs = [lambda forward=forward: cached_step(forward) for _, forward in heads]
        for run in runs:
            run()  # warm-up
        timings = measure_interleaved(runs, self.device, repeats=max(7, self.repeats))
        for (label, _), timing in zip(heads, timings, strict=True):
            self.row(
                "fast",
                f"tiny b{batch} cached text-only step, head: {label}",
                f"{timing.seconds * 1e3:.0f} ms",
                f"{timings[0].seconds / timing.seconds:.2f}x",
                timing=timing,
            )

    def infer(self) -> None:
        for name, batch in self.plan["infer"].items():
            model = self.model(name, visual_depth=-1).eval()
            with torch.no_grad():
                text = model.text_features()
            base = None
            for crops in (1, GRID_CROPS):
                images = self.images(batch * crops, model.image_size)

                def run(images=images, model=model, text=text, batch=batch) -> None:
                    with torch.no_grad(), self.autocast():
                        model(images, text_features=text).score.float().view(batch, -1).mean(1)

                with PeakMemory(self.device) as memory:
                    timing = measure(run, self.device, repeats=self.repeats)
                rate = batch / timing.seconds
                base = base or rate
                mem = f"+{(memory.rss_peak - memory.rss_before) / 2**20:,.0f} MiB RSS over the loaded model"
                if memory.cuda_peak is not None:
                    mem += f", CUDA peak {memory.cuda_peak / 2**30:.2f} GiB"
                label = "centre crop" if crops == 1 else f"{crops} grid crops"
                self.row(
                    "infer",
                    f"{name} deep prompts, b{batch}, {label}",
                    f"{rate:,.1f} img/s; {mem}",
                    "1.00" if crops == 1 else f"{rate / base:.2f} of centre",
                    timing=timing,
                )

    def eval(self) -> None:
        evaluation.run(self)


def _head_as_before(self, queries, tokens, pooled, *, return_attention=False):
    """CrossAttentionHead.forward before the batch-first rewrite: the nn.MultiheadAttention module call."""
    q = self.norm_q(queries).unsqueeze(0).expand(tokens.shape[0], -1, -1)
    kv = self.norm_kv(tokens)
    attended, weights = self.attn(q, kv, kv, need_weights=return_attention)
    score = self.mlp(torch.cat([(attended + q).mean(dim=1), pooled], dim=-1)).squeeze(-1)
    return (score, weights) if return_attention else score


def _timed(method, times: list[float]):
    """`method`, appending the seconds of each call to `times`."""

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = method(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return result

    return timed


class _RandomIQA(torch.utils.data.Dataset):
    """In-memory random images with the fields the Trainer reads (no decoding: the cache item times the model)."""

    def __init__(self, n: int, crops: int, size: int, scenes: int = 9, distortions: int = 11) -> None:
        generator = torch.Generator().manual_seed(n)
        self.images = torch.rand(n, crops, 3, size, size, generator=generator)
        self.mos = torch.rand(n, generator=generator)
        self.scenes = torch.eye(scenes)[torch.randint(scenes, (n,), generator=generator)]
        self.distortion = torch.randint(distortions, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.images[i],
            "index": i,
            "mos": self.mos[i],
            "dataset": 0,
            "scenes": self.scenes[i],
            "distortion": self.distortion[i],
        }


def write_report(bench: Bench, args: argparse.Namespace, info: dict, started: float) -> str:
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command.strip()}` on {datetime.datetime.now():%Y-%m-%d %H:%M} "
        f"in {(time.time() - started) / 60:.1f} min. benchmarks/README.md says what each number means.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in info.items()],
        "",
        f"## Results ({bench.device.type}{', bf16 autocast' if bench.amp else ', fp32'}"
        f"{', --quick' if bench.quick else ''})",
        "",
        "Load column: 1-minute load average / CPU cores other processes used during the slowest kept repeat.",
        "",
        "| item | case | measured | ratio (same run) | target | load |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['item']} | {r['case']} | {r['value']} | {r['ratio']} | {r['target']} | {r['load']} |"
            for r in bench.rows
        ],
        "",
        *[f"{note}\n" for note in bench.notes],
    ]
    text = "\n".join(lines).rstrip() + "\n"
    out = Path(args.out)
    kept = ""
    if out.is_file() and MARKER in out.read_text():
        kept = out.read_text().split(MARKER, 1)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n" + MARKER + (kept or "\n"))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--quick", action="store_true", help="fewer cases and repeats (~5 min on 2 CPU cores)"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "RESULTS.md"), help="report file (markdown)"
    )
    parser.add_argument(
        "--only", default=",".join(ITEMS), help=f"comma-separated items of {', '.join(ITEMS)}"
    )
    parser.add_argument("--gemm-sizes", default=None, help="matrix sizes of the ceiling, e.g. 1024,2048")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--patience",
        type=float,
        default=120.0,
        help="seconds the whole run may wait for other processes to leave the CPU (default 120)",
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line to add under the table (repeatable; gpu.sh uses it)",
    )
    args = parser.parse_args(argv)
    items = [i.strip() for i in args.only.split(",") if i.strip()]
    unknown = sorted(set(items) - set(ITEMS))
    if unknown:
        parser.error(f"--only: unknown item(s) {unknown}; choose from {', '.join(ITEMS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    harness.PATIENCE["seconds"] = args.patience
    logging.disable(logging.WARNING)  # open_clip warns that random weights are random
    device = torch.device(args.device)
    started = time.time()
    bench = Bench(device, args.quick)
    bench.notes.extend(args.note)
    if args.gemm_sizes:
        bench.plan["gemm"] = [int(n) for n in args.gemm_sizes.split(",")]
    info = machine(device)
    info["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    print(f"  {'item':<6} {'case':<44} {'measured':<34} {'ratio':<18} {'target':<10} load/others", flush=True)
    bench.gemm()
    explicit = args.only != parser.get_default("only")
    for item in [
        i for i in ITEMS[1:] if i in items and (explicit or not (args.quick and i in SKIPPED_WHEN_QUICK))
    ]:
        try:
            getattr(bench, item)()
        except Exception as error:  # one broken item must not cost the others' numbers
            bench.row(item, "failed", f"{type(error).__name__}: {error}"[:200])
            bench.notes.append(f"Item {item} failed: {type(error).__name__}: {error}")
    if items != ["gemm"]:
        bench.recheck()
    info["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    info["waited for a quiet CPU"] = f"{harness.PATIENCE['waited']:.0f} s of {args.patience:.0f} s allowed"
    write_report(bench, args, info, started)
    print(f"wrote {args.out} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
