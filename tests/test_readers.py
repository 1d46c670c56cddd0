"""Each reader on a tiny copy of its dataset's official layout, and each kind of bad input."""

from __future__ import annotations

import shutil
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures_official import (
    cell_array,
    html_page,
    make_agiqa3k,
    make_clive,
    make_csiq,
    make_kadid10k,
    make_koniq10k,
    make_live,
    make_metacsv,
    make_spaq,
    make_tid2013,
    truncate,
    write_image,
    write_xlsx,
)
from scipy.io import savemat

from mmpiqa.config import ConfigError
from mmpiqa.data.info import DATASETS
from mmpiqa.data.readers import READERS, DatasetFormatError, option_names, read_dataset
from mmpiqa.data.readers._common import CaseIndex
from mmpiqa.data.table import COLUMNS, DISTORTION_GROUPS, SCENE_CLASSES


def _check_schema(table: pd.DataFrame, name: str) -> None:
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert (table["dataset"] == name).all()
    assert table["mos"].between(0, 1).all()
    assert set(table["dist_group"]) <= {*DISTORTION_GROUPS, ""}
    assert {s for c in table["scenes"] for s in c.split("|") if s} <= set(SCENE_CLASSES)
    assert table["name"].is_unique and table["image"].is_unique
    assert all(p and pd.notna(p) for p in table["image"])
    assert table["dist_level"].dtype == np.int64


# ---------------------------------------------------------------------------------------------- good input


def test_kadid10k(tmp_path):
    root, facts = make_kadid10k(tmp_path)
    t = read_dataset("kadid10k", root)
    _check_schema(t, "kadid10k")
    assert len(t) == facts["n"] == 30
    assert set(t["ref"]) == facts["refs"]
    assert t["name"].iloc[0] == "images/I01_01_01.png"
    # the 1-5 "dmos" is a MOS: higher = better, not flipped
    np.testing.assert_allclose(t["mos"], (t["mos_raw"] - 1) / 4)
    lvl1 = t[(t["ref"] == "I01") & (t["dist_level"] == 1)].set_index("dist_type")["mos"]
    lvl5 = t[(t["ref"] == "I01") & (t["dist_level"] == 5)].set_index("dist_type")["mos"]
    assert (lvl1 > lvl5).all()
    groups = dict(zip(t["dist_type"], t["dist_group"], strict=True))
    assert groups == {
        "gaussian blur": "blur",
        "jpeg2000": "JPEG2000",
        "brighten": "over-exposure",
        "darken": "under-exposure",
        "contrast change": "contrast",
    }
    assert set(t["dist_level"]) == {1, 5}
    assert (t["split"] == "").all() and "var" in t.columns
    assert t.attrs["mos_norm_range"] == (1.0, 5.0) and t.attrs["skipped"] == []


def test_kadid10k_accepts_the_parent_of_a_nested_unzip(tmp_path):
    root, _ = make_kadid10k(tmp_path / "download")
    t = read_dataset("kadid10k", root.parent)  # download/kadid10k/dmos.csv
    assert t.attrs["root"] == str(root)
    assert len(t) == 30


def test_live(tmp_path):
    root, facts = make_live(tmp_path)
    t = read_dataset("live", root)
    _check_schema(t, "live")
    assert len(t) == facts["n"] == 779 and facts["n_orgs"] == 203 and facts["entries"] == 982
    assert t["dist_type"].value_counts().to_dict() == facts["per_folder"]
    assert set(t["ref"]) == {"bikes", "caps", "womanhat", "parrots"}
    assert (t["dist_level"] == -1).all()
    assert dict(zip(t["dist_type"], t["dist_group"], strict=False))["fastfading"] == "JPEG2000"
    # DMOS flipped; one DMOS above 100 widens the rescaling instead of clipping
    assert t.attrs["mos_norm_range"] == (0.0, 104.5)
    worst = t.loc[t["mos_raw"].idxmax()]
    assert worst["mos_raw"] == 104.5 and worst["mos"] == 0.0
    assert np.corrcoef(t["mos"], t["mos_raw"])[0, 1] == pytest.approx(-1.0)
    assert t["name"].str.fullmatch(r"(jp2k|jpeg|wn|gblur|fastfading)/img\d+\.bmp").all()


def test_live_options_originals_and_realigned(tmp_path):
    root, _ = make_live(tmp_path)
    for j in range(1, 234):  # the originals' image files too
        for folder in ("jp2k", "jpeg", "wn", "gblur", "fastfading"):
            p = root / folder / f"img{j}.bmp"
            if not p.exists() and ((folder == "jp2k" and j <= 227) or folder == "jpeg" or j <= 174):
                write_image(p, j, size=(2, 2))
    t = read_dataset("live", root, include_originals=True)
    assert len(t) == 982
    originals = t[t["mos_raw"] == 0.0]
    assert (
        len(originals) == 203
        and (originals["dist_group"] == "").all()
        and (originals["dist_type"] == "").all()
    )
    with pytest.raises(DatasetFormatError, match="dmos_realigned.mat"):
        read_dataset("live", root, realigned=True)
    dmos = np.linspace(-2.6, 111.7, 982)[None, :]
    orgs = np.zeros((1, 982))
    savemat(root / "dmos_realigned.mat", {"dmos_new": dmos, "orgs": orgs, "dmos_std": np.ones((1, 982))})
    r = read_dataset("live", root, realigned=True)
    assert len(r) == 982
    assert r.attrs["mos_norm_range"] == pytest.approx((-2.6, 111.7))
    assert r["mos"].min() == 0.0 and r["mos"].max() == pytest.approx(1.0)


def test_csiq(tmp_path):
    root, facts = make_csiq(tmp_path)
    t = read_dataset("csiq", root)
    _check_schema(t, "csiq")
    assert len(t) == facts["n"] == 7
    np.testing.assert_allclose(t["mos"], 1 - t["mos_raw"])  # DMOS in [0, 1], flipped
    assert set(t["ref"]) == {"1600", "woman", "aerial_city"}  # the number 1600 read back as a name
    row = t.set_index("name").loc["dst_imgs/awgn/1600.AWGN.4.png"]
    assert row["image"].endswith("dst_imgs/AWGN/1600.AWGN.4.png")  # folder case as on disk
    assert (row["dist_type"], row["dist_group"], row["dist_level"]) == ("noise", "noise", 4)
    groups = dict(zip(t["dist_type"], t["dist_group"], strict=False))
    assert groups == {
        "noise": "noise",
        "jpeg 2000": "JPEG2000",
        "contrast": "contrast",
        "blur": "blur",
        "fnoise": "noise",
        "jpeg": "JPEG",
    }
    assert "dmos_std" in t.columns
    assert t.attrs["label_files"][0].endswith("csiq.DMOS.xlsx")


def test_tid2013(tmp_path):
    root, facts = make_tid2013(tmp_path)
    t = read_dataset("tid2013", root)
    _check_schema(t, "tid2013")
    assert len(t) == facts["n"]
    np.testing.assert_allclose(t["mos"], t["mos_raw"] / 9)
    row = t.set_index("name").loc["distorted_images/i25_24_5.bmp"]  # label spelling kept
    assert row["image"].endswith("I25_24_5.BMP")  # the file as stored
    assert (row["ref"], row["dist_level"], row["dist_group"]) == ("i25", 5, "other")
    assert row["dist_type"] == "sparse sampling and reconstruction"
    assert set(t["ref"]) == {"i01", "i02", "i25"}
    assert dict(zip(t["dist_type"], t["dist_group"], strict=False))["jpeg compression"] == "JPEG"


def test_clive_excludes_training_images_and_accepts_parent(tmp_path):
    root, facts = make_clive(tmp_path)
    t = read_dataset("clive", root)  # the folder above ChallengeDB_release
    _check_schema(t, "clive")
    assert len(t) == facts["n"] == 4
    assert not t["name"].str.contains("/t[1-7].bmp").any()
    assert "Images/1000.JPG" in set(t["name"])
    np.testing.assert_allclose(t["mos"], t["mos_raw"] / 100)
    assert (t["ref"] == t["name"]).all()
    full = read_dataset("clive", root, include_training=True)
    assert len(full) == facts["all"]
    assert "Images/trainingImages/t1.bmp" in set(full["name"])


def test_koniq10k_official_split(tmp_path):
    root, facts = make_koniq10k(tmp_path)
    t = read_dataset("koniq10k", root)
    _check_schema(t, "koniq10k")
    assert list(t["name"]) == [f"1024x768/{n}" for n in facts["names"]]
    np.testing.assert_allclose(t["mos_raw"], facts["mos"])
    np.testing.assert_allclose(t["mos"], (np.array(facts["mos"]) - 1) / 4)
    assert list(t["split"]) == ["train", "test", "train", "val", "test"]
    assert {"sd", "mos_zscore"} <= set(t.columns)
    assert len(t.attrs["label_files"]) == 2


def test_koniq10k_without_split_file_and_half_size_images(tmp_path):
    root, _ = make_koniq10k(tmp_path, with_sets=False)
    (root / "1024x768").rename(root / "512x384")
    t = read_dataset("koniq10k", root)
    assert (t["split"] == "").all()
    assert t["name"].str.startswith("512x384/").all()


def test_koniq10k_split_file_in_metadata_and_missing_rows_warn(tmp_path):
    root, _ = make_koniq10k(tmp_path)
    (root / "metadata").mkdir()
    lines = (root / "koniq10k_distributions_sets.csv").read_text().splitlines()
    (root / "metadata" / "koniq10k_distributions_sets.csv").write_text("\n".join(lines[:-1]) + "\n")
    (root / "koniq10k_distributions_sets.csv").unlink()
    with pytest.warns(UserWarning, match="no official split"):
        t = read_dataset("koniq10k", root)
    assert list(t["split"]) == ["train", "test", "train", "val", ""]


def test_spaq_scenes(tmp_path):
    root, facts = make_spaq(tmp_path)
    t = read_dataset("spaq", root)
    _check_schema(t, "spaq")
    assert list(t["name"]) == [f"TestImage/{n}" for n in facts["names"]]
    np.testing.assert_allclose(t["mos"], np.array(facts["mos"]) / 100)
    assert list(t["scenes"]) == facts["scenes"]
    assert {"brightness", "sharpness"} <= set(t.columns)
    no_scenes, _ = make_spaq(tmp_path / "b", with_scenes=False)
    assert (read_dataset("spaq", no_scenes)["scenes"] == "").all()


def test_agiqa3k_prompt_is_the_reference(tmp_path):
    root, facts = make_agiqa3k(tmp_path)
    t = read_dataset("agiqa3k", root)
    _check_schema(t, "agiqa3k")
    assert len(t) == facts["n"]
    assert t["name"].str.startswith("AGIQA-3K/").all()
    assert t["ref"].iloc[0] == t["ref"].iloc[2] == "statue of a man"
    assert t["prompt"].iloc[1] == "artwork with only triangles, anime style"
    np.testing.assert_allclose(t["mos"], t["mos_raw"] / 5)
    assert t["mos_align"].iloc[2] == pytest.approx(3.1)


@pytest.mark.parametrize("sep", [",", "\t"])
def test_metacsv_pyiqa_style(tmp_path, sep):
    csv, facts = make_metacsv(tmp_path, sep=sep)
    t = read_dataset("metacsv", csv, mos_range=(0, 100), higher_is_better=False)
    _check_schema(t, "metacsv")
    assert len(t) == facts["n"]
    assert "jp2k/img2.bmp" in set(t["name"])  # extension found for the name given without one
    np.testing.assert_allclose(t["mos"], 1 - t["mos_raw"] / 100)
    assert list(t["split"]) == ["train", "val", "test", "train"]
    assert list(t["split_1"]) == ["test", "train", "train", "test"]
    assert set(t["ref"]) == {"refs/a.bmp", "refs/b.bmp"}


def test_metacsv_root_plus_csv_and_observed_range(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    with pytest.warns(UserWarning, match="observed range"):
        t = read_dataset("metacsv", csv.parent, csv="meta.csv", mos_col="dmos")
    assert t["mos"].min() == 0.0 and t["mos"].max() == 1.0
    assert t.attrs["mos_norm_range"] == (20.5, 80.0)
    assert t.set_index("name").loc["wn/img1.bmp", "mos"] == 0.0  # no direction given: higher is better


def test_metacsv_never_guesses_the_direction_from_a_dmos_column(tmp_path):
    """KADID-10k's 'dmos' column (and pyiqa's KADID meta file) is a MOS, higher is better, so the name proves
    nothing: it is read as higher-is-better, a warning asks for the direction, and an explicit one is obeyed."""
    csv, _ = make_metacsv(tmp_path)  # the score column is named dmos
    lowest = "wn/img1.bmp"  # raw score 20.5
    with pytest.warns(UserWarning, match="score column is 'dmos', read as higher-is-better") as caught:
        t = read_dataset("metacsv", csv, mos_range=(0, 100))
    assert t.set_index("name")["mos"].idxmin() == lowest and t.attrs["higher_is_better"] is True
    assert len(caught) == 1
    told = read_dataset("metacsv", csv, mos_range=(0, 100), higher_is_better=False)
    assert told.set_index("name")["mos"].idxmax() == lowest
    csv.write_text(csv.read_text().replace(",dmos,", ",mos,"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 'mos' column with a range: nothing to warn about
        assert read_dataset("metacsv", csv, mos_range=(0, 100)).set_index("name")["mos"].idxmin() == lowest


@pytest.mark.parametrize("scale", [(float("nan"), 100.0), (0.0, float("inf")), (100.0, 0.0), (50.0, 50.0)])
def test_metacsv_mos_range_must_be_a_scale(tmp_path, scale):
    csv, _ = make_metacsv(tmp_path)
    with pytest.raises(DatasetFormatError, match="is not a scale; give two finite numbers, low then high"):
        read_dataset("metacsv", csv, mos_range=scale)


def test_reader_options_are_named_and_checked(tmp_path):
    """A misspelt option is refused with the reader's options listed; metacsv's options are checked the way a
    run config's YAML can give them (any value), before the CSV is read."""
    assert option_names("metacsv") == (
        "csv",
        "image_root",
        "name_col",
        "mos_col",
        "mos_range",
        "higher_is_better",
    )
    assert option_names("kadid") == ()
    assert {"size", "seed"} <= set(option_names("embedded"))
    csv, _ = make_metacsv(tmp_path)
    with pytest.raises(
        ConfigError, match="metacsv: no reader option 'mos_column'.*its options are csv, image_root"
    ):
        read_dataset("metacsv", csv, mos_column="dmos")
    with pytest.raises(ConfigError, match="kadid10k: no reader option 'csv'.*its options are none"):
        read_dataset("kadid10k", tmp_path, csv="x.csv")
    for bad, message in [
        ({"higher_is_better": "false"}, "higher_is_better='false'; give true, false or null"),
        ({"mos_range": ["low", "high"]}, "is not a scale"),
        ({"mos_range": 5}, "is not a scale"),
        ({"mos_range": [0, 50, 100]}, "is not a scale"),
        ({"mos_col": 3}, "mos_col=3 is not a path or a column name"),
    ]:
        with pytest.raises(DatasetFormatError, match=message):
            read_dataset("metacsv", csv, **bad)


def test_metacsv_blank_cells(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    good = csv.read_text()
    csv.write_text(good.replace("refs/b.bmp,wn/img2.bmp", ",wn/img2.bmp"))
    t = read_dataset("metacsv", csv, mos_range=(0, 100)).set_index("name")
    assert t.loc["wn/img2.bmp", "ref"] == "wn/img2.bmp"  # a blank reference: the image is its own content
    assert t.loc["wn/img1.bmp", "ref"] == "refs/b.bmp"
    csv.write_text(good.replace("refs/b.bmp,wn/img2.bmp", "refs/b.bmp, "))
    with pytest.raises(DatasetFormatError, match=r"meta\.csv line 5: the image name \(dist_name\) is empty"):
        read_dataset("metacsv", csv, mos_range=(0, 100))


def test_line_numbers_count_the_blank_lines_pandas_skips(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    label = root / "dmos.csv"
    header, *rows = label.read_text().splitlines()
    name, ref, _, var = rows[2].split(",")
    rows[2] = f"{name},{ref},abc,{var}"  # file line 6 below: the header, two blank lines, rows 0, 1, then 2
    label.write_text("\n".join([header, "", "   ", *rows]) + "\n")  # pandas skips a space-only line too
    with pytest.raises(DatasetFormatError, match=r"dmos\.csv: line 6, column 'dmos': 'abc' is not a number"):
        read_dataset("kadid10k", root)


def test_read_dataset_aliases_and_errors(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    assert len(read_dataset("KADID-10k", root)) == 30
    with pytest.raises(DatasetFormatError, match="unknown dataset"):
        read_dataset("nope", root)
    with pytest.raises(DatasetFormatError, match="--root"):
        read_dataset("kadid10k", None)
    assert set(READERS) == set(DATASETS)


def test_embedded_hook_uses_the_other_module(tmp_path, monkeypatch):
    img = write_image(tmp_path / "a.png", 1)
    fake = types.ModuleType("mmpiqa.data.embedded")
    calls = {}

    def read_embedded(root=None, size="default"):
        calls.update(root=root, size=size)
        table = pd.DataFrame(
            {"dataset": "embedded", "name": ["a.png", "b.png"], "image": [str(img), str(tmp_path / "b.png")],
             "mos_raw": [0.5, 0.7], "mos": [0.5, 0.7], "ref": ["x", "y"], "dist_type": "", "dist_group": "",
             "dist_level": -1, "scenes": "", "split": ""}
        )  # fmt: skip
        table.attrs["root"] = str(tmp_path)  # as the real one: the build folder it read
        return table

    fake.read_embedded = read_embedded
    monkeypatch.setitem(sys.modules, "mmpiqa.data.embedded", fake)
    with pytest.raises(DatasetFormatError, match="b.png"):
        read_dataset("embedded", tmp_path, size="tiny")
    assert calls == {"root": tmp_path, "size": "tiny"}
    with pytest.raises(ConfigError, match="embedded: no reader option 'seed'.*its options are size"):
        read_dataset("embedded", tmp_path, seed=1)  # the module's own signature says what it takes
    with pytest.warns(UserWarning, match="skipped 1"):
        t = read_dataset("embedded", tmp_path, skip_unreadable=True)
    assert list(t["name"]) == ["a.png"] and t.attrs["skipped"][0]["name"] == "b.png"


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_label_file_says_where_it_belongs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError) as err:
        read_dataset("kadid10k", tmp_path / "empty")
    msg = str(err.value)
    assert "dmos.csv" in msg and "images/I01_01_01.png" in msg and "kadid-10k-database" in msg


def test_root_that_does_not_exist_or_is_a_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        read_dataset("tid2013", tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DatasetFormatError, match="is a file"):
        read_dataset("tid2013", tmp_path / "f.txt")


def test_two_candidate_subfolders_is_ambiguous(tmp_path):
    make_kadid10k(tmp_path / "a")
    make_kadid10k(tmp_path / "b")
    shutil.move(tmp_path / "b" / "kadid10k", tmp_path / "a" / "kadid_copy")
    with pytest.raises(DatasetFormatError, match="several sub-folders"):
        read_dataset("kadid10k", tmp_path / "a")


def test_missing_images_listed_with_count_and_fix(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    gone = sorted((root / "images").glob("I02_*.png"))[:7]
    for p in gone:
        p.unlink()
    with pytest.raises(DatasetFormatError) as err:
        read_dataset("kadid10k", root)
    msg = str(err.value)
    assert "7 of 30" in msg and "Missing (7)" in msg and "and 2 more" in msg
    assert gone[0].name in msg and "skip_unreadable=True" in msg
    with pytest.warns(UserWarning, match="skipped 7 of 30"):
        t = read_dataset("kadid10k", root, skip_unreadable=True)
    assert len(t) == 23
    assert {s["name"] for s in t.attrs["skipped"]} == {f"images/{p.name}" for p in gone}
    assert all(s["reason"] == "missing" for s in t.attrs["skipped"])


def test_all_images_missing_means_wrong_root_even_when_skipping(tmp_path):
    root, _ = make_koniq10k(tmp_path)
    for p in (root / "1024x768").iterdir():
        p.unlink()
    with pytest.raises(DatasetFormatError, match="none of the 5 images"):
        read_dataset("koniq10k", root, skip_unreadable=True)


def test_corrupt_image_found_only_when_decoding(tmp_path):
    root, _ = make_tid2013(tmp_path)
    truncate(root / "distorted_images" / "i01_08_5.bmp")
    assert len(read_dataset("tid2013", root)) == 5  # existence only
    with pytest.raises(DatasetFormatError, match=r"Unreadable \(1\).*i01_08_5.bmp"):
        read_dataset("tid2013", root, check_images=True)
    with pytest.warns(UserWarning):
        t = read_dataset("tid2013", root, check_images=True, skip_unreadable=True)
    assert len(t) == 4 and "truncated" in t.attrs["skipped"][0]["reason"]


def test_corrupt_image_found_even_if_pillow_pads_truncated_files(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root, _ = make_kadid10k(tmp_path)
    truncate(root / "images" / "I01_25_05.png", 0.3)
    with pytest.raises(DatasetFormatError, match=r"Unreadable \(1\).*I01_25_05.png"):
        read_dataset("kadid10k", root, check_images=True)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_wrong_columns(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    text = (root / "dmos.csv").read_text().replace("dist_img,ref_img,dmos,var", "dist_img,ref_img,score,var")
    (root / "dmos.csv").write_text(text)
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) \['dmos'\]"):
        read_dataset("kadid10k", root)


@pytest.mark.parametrize("bad", ["", "abc", "nan"])
def test_blank_or_non_numeric_score_names_the_line(tmp_path, bad):
    root, _ = make_kadid10k(tmp_path)
    lines = (root / "dmos.csv").read_text().splitlines()
    parts = lines[3].split(",")
    parts[2] = bad
    lines[3] = ",".join(parts)
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"line 4, column 'dmos'"):
        read_dataset("kadid10k", root)


def test_duplicate_names(tmp_path):
    root, _ = make_koniq10k(tmp_path)
    path = root / "koniq10k_scores_and_distributions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"listed 2 times .*line 3.*line 7"):
        read_dataset("koniq10k", root)


def test_score_outside_published_range(tmp_path):
    root, _ = make_koniq10k(tmp_path)
    path = root / "koniq10k_scores_and_distributions.csv"
    path.write_text(path.read_text().replace(",4.31,", ",43.1,"))
    with pytest.raises(
        DatasetFormatError, match=r"line 5: score 43.1 .* outside the published MOS range \[1, 5\]"
    ):
        read_dataset("koniq10k", root)


def test_html_page_saved_as_label_file(tmp_path):
    root, _ = make_live(tmp_path, write_images=False)
    html_page(root / "dmos.mat")
    with pytest.raises(DatasetFormatError, match="HTML page"):
        read_dataset("live", root)


def test_wrong_kind_of_mat_and_xlsx(tmp_path):
    root, _ = make_live(tmp_path / "live", write_images=False)
    (root / "refnames_all.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(DatasetFormatError, match="v7.3"):
        read_dataset("live", root)
    (root / "refnames_all.mat").write_text("refnames_all = {'bikes.bmp', ...}\n")
    with pytest.raises(DatasetFormatError, match="not a MATLAB v5 file"):
        read_dataset("live", root)
    csiq, _ = make_csiq(tmp_path / "csiq")
    (csiq / "csiq.DMOS.xlsx").write_text("image,dst_type,dst_lev,dmos\n1600,noise,1,0.1\n")
    with pytest.raises(DatasetFormatError, match="not an .xlsx workbook"):
        read_dataset("csiq", csiq)
    (csiq / "csiq.DMOS.xlsx").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    with pytest.raises(DatasetFormatError, match="legacy .xls"):
        read_dataset("csiq", csiq)


def test_mat_file_without_the_official_variables(tmp_path):
    root, _ = make_live(tmp_path, write_images=False)
    savemat(root / "dmos.mat", {"scores": np.zeros((1, 982))})
    with pytest.raises(DatasetFormatError, match=r"\['dmos', 'orgs'\] missing; the file holds \['scores'\]"):
        read_dataset("live", root)


def test_live_entry_count_must_match_release(tmp_path):
    root, _ = make_live(tmp_path, write_images=False)
    savemat(root / "refnames_all.mat", {"refnames_all": cell_array(["a.bmp"] * 981, (1, 981))})
    with pytest.raises(DatasetFormatError, match="981 entries; Release 2 has 982"):
        read_dataset("live", root)


def test_clive_names_and_scores_must_pair(tmp_path):
    root, _ = make_clive(tmp_path)
    savemat(root / "ChallengeDB_release" / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 3))})
    with pytest.raises(DatasetFormatError, match="11 images but .* 3 scores"):
        read_dataset("clive", root)


def test_tid2013_malformed_lines(tmp_path):
    root, _ = make_tid2013(tmp_path)
    label = root / "mos_with_names.txt"
    good = label.read_text()
    label.write_text(good + "4.2\n")
    with pytest.raises(DatasetFormatError, match=r"line 6: expected '<MOS> <file name>'"):
        read_dataset("tid2013", root)
    label.write_text(good + "4.2 picture.bmp\n")
    with pytest.raises(DatasetFormatError, match="line 6: file name 'picture.bmp'"):
        read_dataset("tid2013", root)
    label.write_text(good + "x i01_02_1.bmp\n")
    with pytest.raises(DatasetFormatError, match="line 6: MOS 'x' is not a number"):
        read_dataset("tid2013", root)


def test_csiq_unknown_type_and_fractional_level(tmp_path):
    root, _ = make_csiq(tmp_path)
    head = [None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    write_xlsx(root / "csiq.DMOS.xlsx", {"all_by_image": [head, [None, "woman", 1, "sparkle", 1, 0.1, 0.2]]})
    with pytest.raises(DatasetFormatError, match=r"row 2: dst_type 'sparkle'"):
        read_dataset("csiq", root)
    write_xlsx(root / "csiq.DMOS.xlsx", {"all_by_image": [head, [None, "woman", 1, "blur", 2.5, 0.1, 0.2]]})
    with pytest.raises(DatasetFormatError, match="dst_lev 2.5 is not a whole number"):
        read_dataset("csiq", root)
    write_xlsx(root / "csiq.DMOS.xlsx", {"all_by_image": [["image", "dmos"], ["woman", 0.2]]})
    with pytest.raises(DatasetFormatError, match="no header row with columns"):
        read_dataset("csiq", root)


def test_kadid_bad_names(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    path = root / "dmos.csv"
    good = path.read_text()
    path.write_text(good.replace("I01_01_01.png,I01.png", "I01_01_01.png,I02.png", 1))
    with pytest.raises(
        DatasetFormatError, match="line 2: 'I01_01_01.png' names reference 1 but ref_img is 'I02.png'"
    ):
        read_dataset("kadid10k", root)
    path.write_text(good.replace("I01_01_01.png,", "blurry.png,", 1))
    with pytest.raises(DatasetFormatError, match="line 2: dist_img 'blurry.png' is not of the form"):
        read_dataset("kadid10k", root)
    path.write_text(good.replace("I01_01_01.png,", "I01_26_01.png,", 1))
    with pytest.raises(DatasetFormatError, match="type 26"):
        read_dataset("kadid10k", root)


def test_bad_split_value(tmp_path):
    root, _ = make_koniq10k(tmp_path)
    path = root / "koniq10k_distributions_sets.csv"
    path.write_text(path.read_text().replace("validation", "holdout"))
    with pytest.raises(DatasetFormatError, match="line 5: split 'holdout'"):
        read_dataset("koniq10k", root)


def test_metacsv_errors(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    good = csv.read_text()
    csv.write_text(good.replace("dist_name", "picture"))
    with pytest.raises(DatasetFormatError, match="no image name column"):
        read_dataset("metacsv", csv, mos_range=(0, 100))
    with pytest.raises(DatasetFormatError, match="no column 'img'"):
        read_dataset("metacsv", csv, name_col="img", mos_range=(0, 100))
    lines = good.splitlines()
    lines = [lines[0] + ",dist_group"] + [row + ",sparkle" for row in lines[1:]]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match="line 2: dist_group 'sparkle' is not one of"):
        read_dataset("metacsv", csv, mos_range=(0, 100))
    csv.write_text(good)
    with pytest.raises(DatasetFormatError, match="give the CSV file"):
        read_dataset("metacsv", csv.parent)
    with pytest.raises(DatasetFormatError, match="not found"):
        read_dataset("metacsv", csv.parent, csv="other.csv")


def test_binary_file_as_csv(tmp_path):
    root, _ = make_agiqa3k(tmp_path)
    (root / "data.csv").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(DatasetFormatError, match="binary file"):
        read_dataset("agiqa3k", root)


def test_spaq_missing_image_folder(tmp_path):
    root, _ = make_spaq(tmp_path)
    shutil.rmtree(root / "TestImage")
    with pytest.raises(DatasetFormatError, match="no TestImage/ folder"):
        read_dataset("spaq", root)


def test_case_index_prefers_the_exact_name(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "I25.BMP").write_text("upper")
    (tmp_path / "d" / "i25.bmp").write_text("lower")
    idx = CaseIndex(tmp_path)
    assert idx.find("d/i25.bmp").read_text() == "lower"
    assert idx.find("D/I25.BMP").read_text() == "upper"
    assert idx.find("d/I25.bmp").name in {"I25.BMP", "i25.bmp"}
    assert idx.find("d/nope.bmp") is None


def test_csv_with_byte_order_mark(tmp_path):
    root, facts = make_koniq10k(tmp_path)
    path = root / "koniq10k_scores_and_distributions.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(read_dataset("koniq10k", root)) == facts["n"]
