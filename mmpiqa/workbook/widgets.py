"""The workbook's interactive pieces (chapters 00 and 01, and the live training plot of later chapters).

* `distortion_gallery(table)`: pick a distortion family, move the level slider; the image and its pseudo-MOS update.
* `prompt_playground(model, images, mos)`: type prompts (or pick a preset); a small gallery is re-scored zero-shot,
  ranked, and compared with the labels (SRCC).
* `LivePlot()`: the `on_epoch` callback of `mmpiqa.runs.experiment.run` / `Trainer`; redraws loss and SRCC each epoch.

Every display works in any front end. The two widgets are ipywidgets whose display also carries a static PNG of
their first state: JupyterLab renders the live widget (its widget renderer outranks images), while papermill
outputs, nbconvert HTML or GitHub show the picture. `LivePlot` redraws one output in place through a display
handle, so a live kernel sees it grow and an executed notebook keeps the final figure.

The computations (picking a gallery, scoring prompts, ranking, the metric -> quality map) are plain functions,
tested without a browser. Prompts are written worst to best, separated by '|': two prompts give the antonym
readout p(second) (CLIP-IQA), five level words the expected level; both are softmax(scale * cos) @ linspace(0, 1, K).
A single prompt scores by its cosine similarity with the image.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from mmpiqa import metrics
from mmpiqa.config import ConfigError
from mmpiqa.data.crops import CropPolicy, crop
from mmpiqa.data.distortions import FAMILY_BY_NAME
from mmpiqa.data.embedded import CALIBRATION, LOWER_IS_BETTER, METRICS, metric_quality
from mmpiqa.data.images import load_rgb
from mmpiqa.model.backbone import tokenizer_for
from mmpiqa.model.heads import expected_level
from mmpiqa.workbook.parameters import whole_number

# label -> prompts, worst to best, '|'-separated
PROMPT_PRESETS: dict[str, str] = {
    "bad / good photo (CLIP-IQA)": "Bad photo. | Good photo.",
    "low / high quality": "a photo of low quality. | a photo of high quality.",
    "blurry / sharp": "a blurry photo. | a sharp photo.",
    "noisy / clean": "a noisy photo. | a clean photo.",
    "distorted / pristine": "a distorted photo. | a pristine photo.",
    "five levels (LIQE words)": " | ".join(
        f"a photo of {w} quality." for w in ("bad", "poor", "fair", "good", "perfect")
    ),
    "five levels, bare words": "bad | poor | fair | good | perfect",
}


# ------------------------------------------------------------------------------------------- computations
def parse_prompts(text: str) -> list[str]:
    """'worst | ... | best' -> the list of prompts (blank entries dropped)."""
    prompts = [p.strip() for p in str(text).split("|") if p.strip()]
    if not prompts:
        raise ValueError("type at least one prompt; separate several with '|', worst first")
    return prompts


@torch.no_grad()
def encode_prompts(model, prompts: Sequence[str]) -> torch.Tensor:
    """Unit-norm text features (K, E) of hand-written prompts: open_clip's own tokenizer and text tower."""
    tokens = tokenizer_for(model.config.backbone)(list(prompts)).to(model.clip.logit_scale.device)
    return F.normalize(model.clip.encode_text(tokens).float(), dim=-1)


@torch.no_grad()
def image_features(model, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Unit-norm pooled features (N, E) of [0, 1] RGB images (N, 3, S, S) at the model's input size."""
    whole_number("batch_size", batch_size, 1, what="images per pass through the image tower")
    device = model.clip.logit_scale.device
    parts = [
        model.image_features(images[i : i + batch_size].to(device), normalize=True).float()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts)


def prompt_scores(features: torch.Tensor, text: torch.Tensor, logit_scale: float) -> np.ndarray:
    """Zero-shot scores: softmax over the K prompts (worst to best) read out as the expected position in [0, 1];
    for K = 1 the cosine similarity. `features` (N, E) and `text` (K, E) are unit-norm."""
    cos = features.float() @ text.float().t()
    if text.shape[0] == 1:
        return cos[:, 0].cpu().numpy()
    return expected_level(logit_scale * cos).cpu().numpy()


def score_prompts(model, features: torch.Tensor, text: str) -> np.ndarray:
    """Scores of images (their unit-norm `features`) under the prompts in `text` ('worst | ... | best')."""
    scale = float(model.clip.logit_scale.exp())
    return prompt_scores(features, encode_prompts(model, parse_prompts(text)).to(features.device), scale)


def rank_table(scores, mos, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Images ranked by score, best first, with their label rank beside (1 = highest MOS)."""
    scores, mos = np.asarray(scores, float), np.asarray(mos, float)
    frame = pd.DataFrame(
        {"image": list(labels) if labels is not None else range(len(scores)), "score": scores, "mos": mos}
    )
    frame["mos_rank"] = frame["mos"].rank(ascending=False, method="min").astype(int)
    frame = frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def compare_prompts(
    model, features: torch.Tensor, mos, presets: Mapping[str, str], clusters=None
) -> pd.DataFrame:
    """SRCC (with its 95% bootstrap CI) and PLCC with the labels of each wording in `presets`
    (label -> 'worst | ... | best'). `clusters` (e.g. each image's content) makes the CI resample contents."""
    rows = []
    for label, text in presets.items():
        scores = score_prompts(model, features, text)
        low, high = metrics.bootstrap_ci(scores, mos, "srcc", clusters=clusters)
        rows.append({"wording": label, "prompts": len(parse_prompts(text)), "srcc": metrics.srcc(scores, mos),
                     "srcc low": low, "srcc high": high, "plcc": metrics.plcc(scores, mos),
                     "score sd": float(np.std(scores)), "text": text})  # fmt: skip
    return pd.DataFrame(rows)


def pick_gallery(table: pd.DataFrame, n: int = 12, ref: str | None = None) -> pd.DataFrame:
    """`n` images spread evenly over the MOS range (lowest to highest), of one content `ref` or of all."""
    rows = table if ref is None else table[table["ref"] == ref]
    where = "of the table" if ref is None else f"of content {ref!r}"
    whole_number("n", n, 1, len(rows), what="gallery images", why=f"the {len(rows)} images {where}")
    ordered = rows.sort_values(["mos", "name"], kind="stable")
    return ordered.iloc[np.linspace(0, len(ordered) - 1, n).round().astype(int)]


def load_images(paths: Sequence[str], size: int) -> torch.Tensor:
    """[0, 1] RGB images (N, 3, size, size): each file centre-cropped (upscaled first when smaller)."""
    return torch.cat([crop(load_rgb(p), CropPolicy("center", size)) for p in paths])


def check_ref(table: pd.DataFrame, ref: str | None) -> str:
    """`ref`, a content of `table` (None or '': the first), else a ConfigError listing the contents."""
    refs = list(dict.fromkeys(table["ref"]))
    if not ref:
        return refs[0]
    if ref not in refs:
        shown = ", ".join(map(repr, refs[:3])) + (", ..." if len(refs) > 3 else "")
        raise ConfigError(f"ref={ref!r}: not a content of the table; one of {shown} ({len(refs)} contents)")
    return ref


def gallery_image(table: pd.DataFrame, ref: str, family: str, level: int) -> pd.Series:
    """The row of content `ref` distorted by `family` at `level`."""
    hit = table[(table["ref"] == ref) & (table["dist_type"] == family) & (table["dist_level"] == level)]
    if len(hit) != 1:
        raise KeyError(f"no single image for ref={ref!r}, family={family!r}, level={level}")
    return hit.iloc[0]


def reference_path(image: str) -> Path:
    """The reference crop of an embedded image: <build>/images/<ref>/<family>_<level>.png -> <build>/refs/<ref>.png."""
    path = Path(image)
    return path.parents[2] / "refs" / f"{path.parent.name}.png"


# ------------------------------------------------------------------------------------------- figures
def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _rgb(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).clamp(0, 1).numpy()
    return np.asarray(Image.open(image).convert("RGB"))


def gallery_figure(row: pd.Series) -> Figure:
    """Reference and distorted image side by side, titled with family, level and pseudo-MOS."""
    fig = Figure(figsize=(6, 3.3))
    family = FAMILY_BY_NAME.get(row["dist_type"])
    strength = f" ({family.doc} {family.strengths[row['dist_level'] - 1]:g})" if family else ""
    for ax, image, title in zip(fig.subplots(1, 2), (reference_path(row["image"]), row["image"]),
                                ("reference (pseudo-MOS 1.00)", f"pseudo-MOS {row['mos']:.2f}"), strict=True):  # fmt: skip
        ax.imshow(_rgb(image), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{row['dist_type']}, level {row['dist_level']}{strength}", fontsize=10)
    return fig


def gallery_caption(row: pd.Series) -> str:
    """HTML: the pseudo-MOS and, when the table has them, each metric's raw value and quality q."""
    text = f"<b>{html.escape(row['dist_type'])}, level {row['dist_level']}: pseudo-MOS {row['mos']:.3f}</b>"
    if all(m in row for m in METRICS):
        cells = "".join(
            f"<tr><td>{m}</td><td>{row[m]:.4f}</td><td>{metric_quality(m, row[m]):.3f}</td></tr>"
            for m in METRICS
        )
        text += f"<table><tr><th>metric</th><th>raw</th><th>q</th></tr>{cells}</table>mean q = pseudo-MOS"
    return text


def ranking_figure(
    images: torch.Tensor,
    ranked: pd.DataFrame,
    title: str = "",
    names: Sequence[str] | None = None,
    cols: int = 6,
) -> Figure:
    """The gallery in ranked order (best first); `ranked` is a `rank_table` whose 'image' column indexes `images`
    (and `names`, the captions)."""
    rows = -(-len(ranked) // cols)
    fig = Figure(figsize=(1.5 * cols, 1.9 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, item in zip(axes, ranked.itertuples(index=False), strict=False):
        ax.imshow(_rgb(images[item.image]))
        name = f"{names[item.image]}\n" if names is not None else ""
        ax.set_title(
            f"#{item.rank} {name}score {item.score:.3f}\nMOS {item.mos:.2f} (#{item.mos_rank})", fontsize=7
        )
    fig.suptitle(title, fontsize=9)
    return fig


def ranking_html(ranked: pd.DataFrame, names: Sequence[str]) -> str:
    """A `rank_table` as one line of HTML, best first: 'name score' per image; 'image' indexes `names`."""
    items = (
        f"{html.escape(str(names[i]))} <b>{v:.4f}</b>"
        for i, v in zip(ranked["image"], ranked["score"], strict=True)
    )
    return f'<div style="font-size: 90%">best → worst: {" · ".join(items)}</div>'


def distortion_grid(table: pd.DataFrame, ref: str | None = None, families: Sequence[str] | None = None):
    """Families (rows) x reference + levels 1-5 (columns) of one content, each titled with its pseudo-MOS."""
    import matplotlib.pyplot as plt

    ref = check_ref(table, ref)
    rows = table[table["ref"] == ref]
    families = list(families or dict.fromkeys(rows["dist_type"]))
    fig, axes = plt.subplots(len(families), 6, figsize=(9, 1.6 * len(families)), squeeze=False)
    for r, family in enumerate(families):
        for c in range(6):
            item = gallery_image(rows, ref, family, max(c, 1))
            ax = axes[r, c]
            ax.imshow(_rgb(reference_path(item["image"]) if c == 0 else item["image"]))
            ax.set(xticks=[], yticks=[], title="reference" if c == 0 else f"L{c}  MOS {item['mos']:.2f}")
            ax.title.set_fontsize(8)
        axes[r, 0].set_ylabel(family, fontsize=8)
    fig.suptitle(f"content {ref}: every family at levels 1 (barely visible) to 5 (severe)", y=1.0)
    fig.tight_layout()
    return fig


def pseudo_mos_figure(table: pd.DataFrame):
    """Each raw metric against the pseudo-MOS (dots) with the metric's calibration map v -> q (line)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.2), sharey=True)
    for ax, name in zip(axes, METRICS, strict=True):
        ax.scatter(table[name], table["mos"], s=6, alpha=0.4, c=table["dist_level"], cmap="viridis_r")
        knots = np.asarray(CALIBRATION[name])
        grid = np.linspace(knots.min(), knots.max(), 200)
        ax.plot(grid, metric_quality(name, grid), color="C3", label="q = calibrated map")
        rho = metrics.srcc(table[name], table["mos"])
        ax.set(
            xlabel=f"{name} ({'lower' if name in LOWER_IS_BETTER else 'higher'} = better)",
            title=f"SRCC {rho:+.3f}",
        )
    axes[0].set_ylabel("pseudo-MOS / q")
    axes[0].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def mos_distribution_figure(table: pd.DataFrame):
    """Pseudo-MOS histogram by level, and its spread per family (ordered by median)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    sns.histplot(table, x="mos", hue="dist_level", multiple="stack", bins=20, palette="viridis_r", ax=left)
    left.set(xlabel="pseudo-MOS", title="all images, by level")
    order = table.groupby("dist_type")["mos"].median().sort_values().index
    sns.violinplot(table, x="dist_type", y="mos", order=order, cut=0, inner="quart", color="C0", ax=right)
    right.set(xlabel="", ylabel="pseudo-MOS", title="per family (median order)")
    right.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- widgets
class _WithPicture:
    """Mixin for an ipywidgets box whose display also offers a PNG of its state (for front ends without widgets)."""

    _picture = None  # a callable returning PNG bytes

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if self._picture is not None:
            data["image/png"] = base64.b64encode(self._picture()).decode("ascii")
        return data


@cache
def _box_class():
    import ipywidgets

    return type("PictureBox", (_WithPicture, ipywidgets.VBox), {})


def _box(children, picture):
    box = _box_class()(children)
    box._picture = picture
    return box


def distortion_gallery(
    table: pd.DataFrame, ref: str | None = None, family: str | None = None, level: int = 3
):
    """Family dropdown + level slider (+ content dropdown) -> the distorted image beside its reference, the
    pseudo-MOS and the five metrics behind it. `table` is the embedded benchmark (with_metrics=True adds metrics)."""
    import ipywidgets as w

    refs = list(dict.fromkeys(table["ref"]))
    families = list(dict.fromkeys(table["dist_type"]))
    pick_ref = w.Dropdown(options=refs, value=check_ref(table, ref), description="content")
    pick_family = w.Dropdown(options=families, value=family or families[0], description="family")
    slider = w.IntSlider(value=level, min=1, max=5, description="level", continuous_update=False)
    picture, caption = w.Image(format="png"), w.HTML()

    def current() -> pd.Series:
        return gallery_image(table, pick_ref.value, pick_family.value, slider.value)

    def update(_=None) -> None:
        row = current()
        picture.value, caption.value = _png(gallery_figure(row)), gallery_caption(row)

    for control in (pick_ref, pick_family, slider):
        control.observe(update, names="value")
    update()
    controls = w.HBox([pick_ref, pick_family, slider])
    return _box([controls, w.HBox([picture, caption])], lambda: picture.value)


def prompt_playground(model, images: torch.Tensor, mos, *, labels: Sequence[str] | None = None,
                      features: torch.Tensor | None = None, presets: Mapping[str, str] | None = None,
                      text: str | None = None):  # fmt: skip
    """Type prompts ('worst | ... | best') or pick a preset: the gallery `images` (N, 3, S, S) is scored zero-shot,
    ranked best first, and compared with `mos` by SRCC. `features` skips the image tower (unit-norm, N x E)."""
    import ipywidgets as w

    presets = dict(presets or PROMPT_PRESETS)
    mos = np.asarray(mos, float)
    if len(mos) < metrics.MIN_ITEMS:
        raise ConfigError(
            f"prompt_playground: {len(mos)} gallery images; at least {metrics.MIN_ITEMS}, the fewest an SRCC ranks"
        )
    features = features if features is not None else image_features(model, images)
    names = list(labels) if labels is not None else [str(i) for i in range(len(mos))]
    preset = w.Dropdown(options=list(presets), description="preset", layout=w.Layout(width="420px"))
    box = w.Text(value=text or presets[preset.value], description="prompts", continuous_update=False,
                 placeholder="worst | ... | best", layout=w.Layout(width="720px"))  # fmt: skip
    picture, report = w.Image(format="png"), w.HTML()

    def update(_=None) -> None:
        try:
            scores = score_prompts(model, features, box.value)
        except ValueError as error:
            report.value = f"<b>{html.escape(str(error))}</b>"
            return
        ranked = rank_table(scores, mos)
        rho = metrics.srcc(scores, mos) if np.ptp(scores) > 0 else float("nan")
        head = f"SRCC with the labels over these {len(mos)} images: {rho:+.3f}"
        picture.value = _png(ranking_figure(images, ranked, title=f"{box.value}\n{head}", names=names))
        report.value = f"<b>{html.escape(head)}</b>" + ranking_html(ranked, names)

    preset.observe(lambda change: setattr(box, "value", presets[change["new"]]), names="value")
    box.observe(update, names="value")
    update()
    return _box([preset, box, report, picture], lambda: picture.value)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


class LivePlot:
    """A training plot that redraws in place after every epoch: pass it as `on_epoch` to `experiment.run` or
    `Trainer`. Rows are the trainer's history rows (`epoch`, `train_loss`, `val_srcc`, ...); when `epoch` does not
    grow a new line starts (the next split of an n-split run). Outside a live kernel (papermill, nbconvert) the
    output keeps the last figure. `display()` shows it; without it, the first epoch does.

        live = LivePlot(keys=("train_loss", "val_srcc")).display()
        experiment.run(config, out, on_epoch=live)
    """

    def __init__(self, keys: Sequence[str] = ("train_loss", "val_srcc"), title: str = "") -> None:
        self.keys, self.title = tuple(keys), title
        self.rows: list[dict] = []
        self._handle = None

    def __call__(self, row: dict) -> None:
        self._add(row)
        self._redraw()

    def extend(self, rows: Sequence[dict]) -> LivePlot:
        """Add many rows at once (e.g. the stored history of a run that was skipped because it is complete)."""
        for row in rows:
            self._add(row)
        self._redraw()
        return self

    def _add(self, row: dict) -> None:
        run = self.rows[-1]["run"] if self.rows else 0
        if self.rows and row.get("epoch", 0) <= self.rows[-1].get("epoch", 0):
            run += 1
        self.rows.append({**row, "run": run})

    def _redraw(self) -> None:
        if self._handle is None and _in_ipython():
            self.display()  # forgot .display(): show it at the first epoch rather than never
        elif self._handle is not None:
            self._handle.update(self._image())

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def figure(self) -> Figure:
        fig = Figure(figsize=(4.2 * len(self.keys), 3.2))
        frame = self.history
        for ax, key in zip(np.atleast_1d(fig.subplots(1, len(self.keys))), self.keys, strict=True):
            for run, part in frame.groupby("run") if key in frame else []:
                ax.plot(part["epoch"], part[key], marker="o", label=f"split {run}")
            ax.set(xlabel="epoch", ylabel=key.replace("_", " "))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if frame.get("run", pd.Series([0])).max() > 0:
                ax.legend(fontsize="small")
        fig.suptitle(self.title or f"{len(frame)} epoch(s)", fontsize=10)
        fig.tight_layout()
        return fig

    def _image(self):
        from IPython.display import Image as PNG

        return PNG(_png(self.figure()))

    def display(self) -> LivePlot:
        """Show the plot now (empty until the first epoch); later epochs update this same output."""
        from IPython.display import display

        self._handle = display(self._image(), display_id=True)
        return self
