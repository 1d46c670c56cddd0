"""The embedded synthetic benchmark: families, determinism, cache, atomic build, label sanity."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest

from mmpiqa.data import embedded as emb
from mmpiqa.data.distortions import FAMILIES, to_uint8
from mmpiqa.data.table import DISTORTION_GROUPS, SCENE_CLASSES, validate_table

# one content, three families: a build of 15 images, for the tests that build more than once
TINY = emb.EmbeddedSpec("tiny", caps=(("astronaut", 1),), families=("gaussian_blur", "jpeg", "impulse_noise"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded-cache")
    start = time.perf_counter()
    folder = emb.build_embedded("small", root=root, progress=False)
    return root, folder, time.perf_counter() - start


@pytest.fixture(scope="module")
def small_table(small):
    root, _, _ = small
    return emb.read_embedded(root=root, size="small", with_metrics=True)


def test_at_least_12_families_with_5_levels_spanning_the_groups():
    assert len(FAMILIES) >= 12
    assert all(len(f.strengths) == 5 for f in FAMILIES)
    assert {f.group for f in FAMILIES} <= set(DISTORTION_GROUPS)
    assert len({f.group for f in FAMILIES}) >= 10


def test_families_are_deterministic_for_a_generator_and_in_range():
    img = emb.content_crops("small")[0][2].astype(np.float32) / 255.0
    for fam in FAMILIES:
        a = fam.apply(img, 3, np.random.default_rng(7))
        b = fam.apply(img, 3, np.random.default_rng(7))
        assert a.shape == img.shape and a.dtype == np.float32
        assert np.array_equal(a, b), fam.name
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert not np.array_equal(to_uint8(a), to_uint8(img)), f"{fam.name} level 3 changes nothing"


def test_default_size_has_enough_distinct_contents():
    contents = emb.content_crops("default")
    assert len(contents) >= 30
    assert len({cid for cid, _, _ in contents}) == len(contents)
    crops = {c.tobytes() for _, _, c in contents}
    assert len(crops) == len(contents)
    assert all(c.shape == (160, 160, 3) and c.dtype == np.uint8 for _, _, c in contents)


def test_small_table_is_valid_and_complete(small, small_table):
    _, folder, _ = small
    t = small_table
    assert validate_table(t.drop(columns=[*emb.METRICS, "source"])).shape[0] == len(t)
    # every content crop names the photo it was cut from (splits keep a photo on one side)
    assert t.groupby("ref")["source"].nunique().eq(1).all() and set(t["source"]) <= {
        s.key for s in emb.SOURCES
    }
    assert set(t["dataset"]) == {"embedded"}
    n_refs = t["ref"].nunique()
    assert n_refs == 3
    assert len(t) == n_refs * len(FAMILIES) * 5
    per = t.groupby(["ref", "dist_type"])["dist_level"].apply(lambda s: sorted(s))
    assert all(levels == [1, 2, 3, 4, 5] for levels in per)
    assert t["mos"].between(0, 1).all() and (t["mos"] == t["mos_raw"]).all()
    assert {s for cell in t["scenes"] for s in cell.split("|")} <= set(SCENE_CLASSES)
    assert all((folder / n).is_file() for n in t["name"])
    assert all(not n.startswith("/") for n in t["name"])
    assert (t["split"] == "").all()


def test_refs_are_excluded_by_default_and_score_1(small):
    root, _, _ = small
    with_refs = emb.read_embedded(root=root, size="small", include_refs=True)
    refs = with_refs[with_refs["dist_level"] == 0]
    assert len(refs) == 3 and (refs["mos"] == 1.0).all()


def test_pseudo_mos_decreases_with_level_in_every_family(small_table):
    means = small_table.groupby(["dist_type", "dist_level"])["mos"].mean().unstack()
    assert (np.diff(means.to_numpy(), axis=1) < 0).all(), means


def test_pseudo_mos_formula_matches_the_stored_metrics(small_table):
    again = emb.pseudo_mos(small_table)
    assert np.allclose(again, small_table["mos"], atol=2e-6)
    ident = emb.pseudo_mos(dict(ms_ssim=[1.0], vif=[1.0], gmsd=[0.0], mdsi=[0.0], haarpsi=[1.0]))
    assert ident[0] == pytest.approx(1.0)
    worst = emb.pseudo_mos(dict(ms_ssim=[0.0], vif=[0.0], gmsd=[1.0], mdsi=[1.0], haarpsi=[0.0]))
    assert worst[0] == pytest.approx(0.0)


def test_cache_is_reused(small):
    root, folder, first = small
    stamp = (folder / "labels.csv").stat().st_mtime_ns
    start = time.perf_counter()
    again = emb.build_embedded("small", root=root, progress=False)
    assert again == folder
    assert time.perf_counter() - start < min(1.0, first / 4)
    assert (folder / "labels.csv").stat().st_mtime_ns == stamp
    assert len(list(root.glob(".tmp-*"))) == 0
    # a build folder passed directly is read as is
    assert len(emb.read_embedded(root=folder)) == 3 * len(FAMILIES) * 5


def test_cache_location_follows_env_and_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MMPIQA_CACHE", str(tmp_path / "c"))
    assert emb.cache_dir() == tmp_path / "c" / "embedded"
    assert emb.cache_dir(tmp_path / "r") == tmp_path / "r"
    monkeypatch.delenv("MMPIQA_CACHE")
    assert emb.cache_dir().parts[-3:] == (".cache", "mmpiqa", "embedded")


def test_build_is_deterministic_and_independent_of_other_contents(tmp_path, small_table):
    a = emb.build_embedded(TINY, seed=0, root=tmp_path / "a", progress=False, workers=1)
    b = emb.build_embedded(TINY, seed=0, root=tmp_path / "b", progress=False, workers=1)
    assert a.name == b.name
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    for png in sorted((a / "images").rglob("*.png")):
        assert png.read_bytes() == (b / png.relative_to(a)).read_bytes()
    # the same images and labels as inside the 3-content small build
    tiny = pd.read_csv(a / "labels.csv", keep_default_na=False).query("dist_level > 0").set_index("name")
    small = small_table.set_index("name").loc[tiny.index]
    assert np.allclose(tiny["mos"].astype(float), small["mos"], atol=1e-6)
    # another seed gives another build (noise differs), same deterministic families otherwise
    c = emb.build_embedded(TINY, seed=1, root=tmp_path / "a", progress=False, workers=1)
    assert c != a
    noisy = "images/astronaut-r2c1/impulse_noise_3.png"
    assert (a / noisy).read_bytes() != (c / noisy).read_bytes()
    blur = "images/astronaut-r2c1/gaussian_blur_3.png"
    assert (a / blur).read_bytes() == (c / blur).read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch, workers):
    """The second content fails after the first one's files are written: nothing may be left behind."""
    spec = emb.EmbeddedSpec("two", caps=(("chelsea", 2),), families=("jpeg",))
    second = emb.content_crops(spec)[1][2]
    real = emb.score_batch

    def failing(distorted, reference, *args, **kwargs):
        if np.array_equal(reference, second):
            raise RuntimeError("simulated failure")
        return real(distorted, reference, *args, **kwargs)

    monkeypatch.setattr(emb, "score_batch", failing)  # forked workers inherit the patch
    with pytest.raises(RuntimeError, match="simulated failure"):
        emb.build_embedded(spec, root=tmp_path, progress=False, workers=workers)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    return emb.build_embedded(TINY, root=tmp_path_factory.mktemp("tiny"), progress=False, workers=1)


def _cut_at_a_line(labels):
    labels.write_text("\n".join(labels.read_text().splitlines()[:7]) + "\n")


def _half(labels):
    labels.write_bytes(labels.read_bytes()[: len(labels.read_bytes()) // 2])


def _drop_a_column(labels):
    table = pd.read_csv(labels, keep_default_na=False)
    table.drop(columns=["scenes"]).to_csv(labels, index=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_cut_at_a_line, "labels.csv has 6 rows, build.json says the build made 16"),
        (lambda labels: labels.write_bytes(b""), "EmptyDataError"),
        (_half, "damaged build"),
        (_drop_a_column, "KeyError: 'scenes'"),
        (lambda labels: (labels.parent / "build.json").unlink(), "build.json"),
    ],
    ids=["cut-at-a-line", "empty", "cut-mid-row", "column-dropped", "no-build-record"],
)
def test_a_damaged_build_is_refused_with_the_way_out(tmp_path, tiny_build, damage, message):
    from mmpiqa.errors import InputError

    folder = tmp_path / tiny_build.name
    shutil.copytree(tiny_build, folder)
    damage(folder / "labels.csv")
    with pytest.raises(InputError, match="delete this folder and the next run builds it again") as info:
        emb.read_embedded(root=folder)
    assert str(folder) in str(info.value) and message in str(info.value)


def test_a_damaged_image_of_a_build_says_to_rebuild_not_to_download(tmp_path, tiny_build):
    from mmpiqa.data.readers import DatasetFormatError, read_dataset

    folder = tmp_path / tiny_build.name
    shutil.copytree(tiny_build, folder)
    pngs = sorted((folder / "images").rglob("*.png"))
    pngs[0].write_bytes(b"")
    pngs[1].unlink()
    with pytest.raises(DatasetFormatError) as info:
        read_dataset("embedded", folder, check_images=True)
    text = str(info.value)
    assert f"delete {folder} and the next run builds it again" in text and "download" not in text
    assert "2 of 15 listed images cannot be used" in text
    for png in pngs:
        png.unlink(missing_ok=True)
    with pytest.raises(
        DatasetFormatError, match=f"none of the 15 images .* delete {folder} and the next run"
    ):
        read_dataset("embedded", folder)


def test_a_build_folder_without_labels_is_built_again(tmp_path, tiny_build):
    base = tmp_path / "cache"
    shutil.copytree(tiny_build, base / tiny_build.name)
    (base / tiny_build.name / "labels.csv").unlink()  # e.g. copied by hand, or cleaned up half-way
    folder = emb.build_embedded(TINY, root=base, progress=False, workers=1)
    assert (folder / "labels.csv").read_bytes() == (tiny_build / "labels.csv").read_bytes()
    assert sorted(p.name for p in base.iterdir()) == [tiny_build.name]  # no temporary folder left


def test_a_cache_folder_that_is_a_file_is_a_write_error(tmp_path):
    from mmpiqa.files import WriteError

    base = tmp_path / "cache"
    base.write_text("not a folder")
    with pytest.raises(WriteError, match=f"cannot write {base}"):
        emb.build_embedded(TINY, root=base, progress=False, workers=1)


def test_unknown_size_is_refused():
    from mmpiqa.config import ConfigError

    with pytest.raises(
        ConfigError, match="size='huge': the embedded benchmark comes in sizes small, default, full"
    ):
        emb.build_embedded("huge")
