"""mmpiqa.workbook.widgets: the computations behind the notebook widgets, and the widgets driven without a browser."""

import base64

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmpiqa import ModelConfig, build_model
from mmpiqa.config import ConfigError
from mmpiqa.data.embedded import CALIBRATION, METRICS, metric_quality, pseudo_mos
from mmpiqa.workbook import widgets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEVELS = " | ".join(f"a photo of {w} quality." for w in ("bad", "poor", "fair", "good", "perfect"))


@pytest.fixture(scope="module")
def zero_shot():
    """The micro backbone with hand-written prompts (nothing learned): the library's 'levels' readout."""
    return build_model(ModelConfig(backbone="micro", head="levels", text_depth=0, visual_depth=0))


@pytest.fixture(scope="module")
def gallery(zero_shot):
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return images, widgets.image_features(zero_shot, images), np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2])


@pytest.fixture
def build(tmp_path):
    """A miniature embedded build on disk: one content, two families, five levels, with the reference."""
    rng = np.random.default_rng(0)
    (tmp_path / "refs").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        tmp_path / "refs" / "cat-r0c0.png"
    )
    rows = []
    for family in ("jpeg", "darken"):
        for level in range(1, 6):
            name = f"images/cat-r0c0/{family}_{level}.png"
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
            metric_values = {m: CALIBRATION[m][10 - 2 * level] for m in METRICS}  # worse with level
            rows.append({"name": name, "image": str(tmp_path / name), "ref": "cat-r0c0", "dist_type": family,
                         "dist_level": level, "mos": 1 - level / 6, **metric_values})  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- prompts
def test_parse_prompts():
    assert widgets.parse_prompts(" Bad photo. |Good photo. | ") == ["Bad photo.", "Good photo."]
    assert widgets.parse_prompts("sharp") == ["sharp"]
    with pytest.raises(ValueError, match="at least one prompt"):
        widgets.parse_prompts(" | ")


def test_prompt_scores_readouts():
    features = torch.nn.functional.normalize(
        torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    text = torch.nn.functional.normalize(
        torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    two = widgets.prompt_scores(features, text[:2], 10.0)
    expected = (10.0 * features @ text[:2].t()).softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(two, expected, rtol=1e-6)
    np.testing.assert_allclose(widgets.prompt_scores(features, text[[1, 0]], 10.0), 1 - two, rtol=1e-5)
    np.testing.assert_allclose(widgets.prompt_scores(features, text[:1], 10.0), (features @ text[0]).numpy())
    three = widgets.prompt_scores(features, text, 10.0)
    assert three.shape == (5,) and ((three >= 0) & (three <= 1)).all()


def test_playground_scores_are_the_library_levels_readout(zero_shot, gallery):
    images, features, _ = gallery
    with torch.no_grad():
        expected = zero_shot(images).score.numpy()
    np.testing.assert_allclose(widgets.score_prompts(zero_shot, features, LEVELS), expected, atol=1e-6)
    assert zero_shot.text_prompts.prompts[:5] == widgets.parse_prompts(LEVELS)


def test_rank_table():
    ranked = widgets.rank_table([0.2, 0.9, 0.5], [0.1, 0.3, 0.8], labels=["a", "b", "c"])
    assert ranked["image"].tolist() == ["b", "c", "a"]
    assert ranked["rank"].tolist() == [1, 2, 3]
    assert ranked["mos_rank"].tolist() == [2, 1, 3]
    html = widgets.ranking_html(widgets.rank_table([0.2, 0.9], [0.1, 0.3]), names=["x<y", "z"])
    assert html.index("z") < html.index("x&lt;y") and "0.9000" in html


def test_compare_prompts_reversed_pair_negates_srcc(zero_shot, gallery):
    _, features, mos = gallery
    table = widgets.compare_prompts(zero_shot, features, mos, {"fwd": "bad | good", "rev": "good | bad"})
    assert list(table.columns) == [
        "wording",
        "prompts",
        "srcc",
        "srcc low",
        "srcc high",
        "plcc",
        "score sd",
        "text",
    ]
    assert table["prompts"].tolist() == [2, 2]
    assert -1 <= table["srcc"][0] <= 1
    assert table["srcc"][1] == pytest.approx(-table["srcc"][0])


# ------------------------------------------------------------------------------------------- data
def test_pick_gallery_spreads_over_mos():
    table = pd.DataFrame({"name": [f"i{k}" for k in range(40)], "ref": ["a", "b"] * 20,
                          "mos": np.random.default_rng(0).random(40)})  # fmt: skip
    chosen = widgets.pick_gallery(table, 8)
    assert len(chosen) == 8 and chosen["name"].is_unique
    assert chosen["mos"].is_monotonic_increasing
    assert chosen["mos"].iloc[0] == table["mos"].min() and chosen["mos"].iloc[-1] == table["mos"].max()
    assert set(widgets.pick_gallery(table, 5, ref="a")["ref"]) == {"a"}
    for n in (21, 0, -1, 2.0):  # -1 would be "the last image" to numpy
        message = rf"n={n!r}: gallery images, a whole number from 1 to 20 \(the 20 images of content 'b'\)"
        with pytest.raises(ConfigError, match=message):
            widgets.pick_gallery(table, n, ref="b")


def test_metric_quality_is_the_pseudo_mos_formula():
    rng = np.random.default_rng(0)
    raw = {m: rng.uniform(min(CALIBRATION[m]), max(CALIBRATION[m]), 50) for m in METRICS}
    mean_q = np.mean([metric_quality(m, raw[m]) for m in METRICS], axis=0)
    np.testing.assert_allclose(mean_q, pseudo_mos(raw), atol=1e-12)
    identical = {"ms_ssim": 1.0, "vif": 1.0, "gmsd": 0.0, "mdsi": 0.0, "haarpsi": 1.0}
    assert all(metric_quality(m, v) == 1.0 for m, v in identical.items())


def test_gallery_lookup_and_reference(build):
    row = widgets.gallery_image(build, "cat-r0c0", "jpeg", 2)
    assert row["name"].endswith("jpeg_2.png")
    assert widgets.reference_path(row["image"]).is_file()
    assert widgets.reference_path("/b/images/x-r1c2/jpeg_3.png").as_posix() == "/b/refs/x-r1c2.png"
    with pytest.raises(KeyError, match="no single image"):
        widgets.gallery_image(build, "cat-r0c0", "jpeg", 6)


def test_a_content_not_in_the_table_is_refused_by_name(build):
    assert widgets.check_ref(build, "") == widgets.check_ref(build, None) == "cat-r0c0"  # '': the first
    message = r"ref='nope': not a content of the table; one of 'cat-r0c0' \(1 contents\)"
    with pytest.raises(ConfigError, match=message):
        widgets.distortion_grid(build, ref="nope")
    with pytest.raises(ConfigError, match=message):
        widgets.distortion_gallery(build, ref="nope")


def test_image_features_refuses_an_empty_batch(zero_shot, gallery):
    images, features, _ = gallery
    torch.testing.assert_close(widgets.image_features(zero_shot, images, batch_size=4), features)
    for batch_size in (0, -1):
        with pytest.raises(ConfigError, match=f"batch_size={batch_size}: images per pass through the image"):
            widgets.image_features(zero_shot, images, batch_size=batch_size)


def test_figures_render(build, gallery):
    import matplotlib.pyplot as plt

    row = widgets.gallery_image(build, "cat-r0c0", "darken", 5)
    assert widgets._png(widgets.gallery_figure(row)).startswith(PNG_MAGIC)
    assert "pseudo-MOS" in widgets.gallery_caption(row) and "haarpsi" in widgets.gallery_caption(row)
    grid = widgets.distortion_grid(build)
    assert len(grid.axes) == 2 * 6
    assert len(widgets.pseudo_mos_figure(build).axes) == len(METRICS)
    assert len(widgets.mos_distribution_figure(build).axes) == 2
    images, _, mos = gallery
    ranked = widgets.rank_table(np.arange(6.0), mos)
    assert widgets._png(widgets.ranking_figure(images, ranked, names=list("abcdef"), cols=4)).startswith(
        PNG_MAGIC
    )
    plt.close("all")


# ------------------------------------------------------------------------------------------- live plot
def test_live_plot_rows_runs_and_updates(monkeypatch):
    updates = []

    class Handle:
        def update(self, obj):
            updates.append(obj)

    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=None: Handle())
    live = widgets.LivePlot(keys=("train_loss", "val_srcc")).display()
    for epoch, loss in [(1, 0.9), (2, 0.7), (1, 0.8), (2, 0.6)]:  # two splits
        live({"epoch": epoch, "train_loss": loss, "val_srcc": 0.1 * epoch, "val_plcc": 0.0})
    assert len(updates) == 4 and updates[-1].data.startswith(PNG_MAGIC)
    assert live.history["run"].tolist() == [0, 0, 1, 1]
    assert len(live.figure().axes) == 2


def test_live_plot_without_display_only_records():
    live = widgets.LivePlot(keys=("train_loss",))
    live({"epoch": 1, "train_loss": 1.0})
    live.extend([{"epoch": 2, "train_loss": 0.5}, {"epoch": 1, "train_loss": 0.9}])
    assert live.history["train_loss"].tolist() == [1.0, 0.5, 0.9]
    assert live.history["run"].tolist() == [0, 0, 1]
    assert widgets._png(live.figure()).startswith(PNG_MAGIC)


# ------------------------------------------------------------------------------------------- widgets
def _png_of(widget) -> bytes:
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live front ends render the widget
    return base64.b64decode(bundle["image/png"])  # the others the picture


def _find(widget, kind):
    for child in getattr(widget, "children", ()):
        if isinstance(child, kind):
            yield child
        yield from _find(child, kind)


def test_distortion_gallery_follows_the_slider(build):
    ipywidgets = pytest.importorskip("ipywidgets")
    box = widgets.distortion_gallery(build, family="jpeg", level=1)
    assert _png_of(box).startswith(PNG_MAGIC)
    (slider,) = _find(box, ipywidgets.IntSlider)
    (picture,) = _find(box, ipywidgets.Image)
    (caption,) = _find(box, ipywidgets.HTML)
    before = (picture.value, caption.value)
    slider.value = 5
    assert picture.value != before[0] and "level 5" in caption.value and caption.value != before[1]


def test_prompt_playground_rescores_on_new_prompts(zero_shot, gallery):
    ipywidgets = pytest.importorskip("ipywidgets")
    images, features, mos = gallery
    box = widgets.prompt_playground(zero_shot, images, mos, labels=list("abcdef"), features=features)
    assert _png_of(box).startswith(PNG_MAGIC)
    (text,) = _find(box, ipywidgets.Text)
    (preset,) = _find(box, ipywidgets.Dropdown)
    (report,) = _find(box, ipywidgets.HTML)
    first = report.value
    assert "SRCC with the labels" in first
    text.value = "Good photo. | Bad photo."
    assert report.value != first
    preset.value = "five levels (LIQE words)"
    assert text.value == widgets.PROMPT_PRESETS["five levels (LIQE words)"]
    text.value = " | "
    assert "at least one prompt" in report.value
    with pytest.raises(ConfigError, match="prompt_playground: 2 gallery images; at least 3"):  # no SRCC of 2
        widgets.prompt_playground(zero_shot, images[:2], mos[:2], features=features[:2])
