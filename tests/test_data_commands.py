"""`mmpiqa data list|verify|card` through the command line's `main`."""

from __future__ import annotations

import pytest
from fixtures_official import (
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
)

from mmpiqa.cli import main
from mmpiqa.data import commands
from mmpiqa.data.info import DATASETS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_shows_every_dataset_with_scale_licence_and_url(capsys):
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    for info in DATASETS.values():
        line = next(row for row in out.splitlines() if row.startswith(info.name + " "))
        assert info.url in line and info.licence in line and info.scale_text() in line
    assert "10,125" in out and "DMOS 0-1, lower = better" in out


def test_card_prints_the_file(capsys):
    rc, out, _ = run(capsys, "card", "kadid10k")
    assert rc == 0
    assert out.startswith("# KADID-10k") and "| 15 | denoise | noise |" in out
    assert out.endswith("`data.reader_options` in a run config): none.\n")  # the reader takes only its root
    rc, out, _ = run(capsys, "card", "metacsv")
    assert "run config): `csv`, `image_root`, `name_col`, `mos_col`, `mos_range`, `higher_is_better`." in out


def test_every_dataset_has_a_card_file():
    for name in DATASETS:
        text = (commands.CARDS_DIR / f"{name}.md").read_text()
        assert text.startswith("# ") and f"`{name}`" in text.splitlines()[0]


def test_card_falls_back_to_dataset_info(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(commands, "CARDS_DIR", tmp_path)
    rc, out, _ = run(capsys, "card", "tid2013")
    assert rc == 0
    assert "MOS 0-9, higher = better" in out and "mos_with_names.txt" in out and "ponomarenko" in out


BUILDERS = {
    "kadid10k": (
        make_kadid10k,
        ["5 types in 5 groups", "levels", "gaussian blur", "references   3 (release: 81)"],
    ),
    "live": (make_live, ["779 listed, 779 usable", "widened", "fastfading  JPEG2000"]),
    "csiq": (make_csiq, ["7 listed", "jpeg 2000", "rescaled with [0, 1]"]),
    "tid2013": (make_tid2013, ["5 listed", "sparse sampling and reconstruction  other"]),
    "clive": (make_clive, ["4 listed", "distortions  none labelled", "MOS 0-100"]),
    "koniq10k": (
        make_koniq10k,
        ["split        official: train 2, val 1, test 2", "koniq10k_distributions_sets.csv"],
    ),
    "spaq": (make_spaq, ["scenes       animal 1, human 1, indoor scene 1, night scene 1"]),
    "agiqa3k": (make_agiqa3k, ["3 listed", "references   2"]),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_verify_each_fixture(capsys, tmp_path, name):
    build, expected = BUILDERS[name]
    root, facts = build(tmp_path)
    rc, out, err = run(capsys, "verify", name, "--root", str(root))
    assert rc == 0, out + err
    assert f"{facts['n']} usable, 0 missing, 0 unreadable (all decoded)" in out
    assert out.rstrip().endswith("result: OK")
    for text in expected:
        assert text in out, text


def test_verify_metacsv(capsys, tmp_path):
    csv, _ = make_metacsv(tmp_path)
    rc, out, _ = run(
        capsys, "verify", "metacsv", "--root", str(csv), "--mos-range", "0", "100", "--lower-is-better"
    )
    assert rc == 0
    assert "DMOS 0-100, lower = better" in out and "official: train 2, val 1, test 1" in out


def test_verify_takes_reader_options_as_a_run_config_does(capsys, tmp_path):
    csv, _ = make_metacsv(tmp_path)
    options = ["--option", "mos_range=[0, 100]", "--option", "higher_is_better=false"]
    rc, out, _ = run(capsys, "verify", "metacsv", "--root", str(csv), *options)
    assert rc == 0 and "DMOS 0-100, lower = better" in out
    rc, _, err = run(capsys, "verify", "metacsv", "--root", str(csv), "--option", "mos_column=dmos")
    assert rc == 2 and "metacsv: no reader option 'mos_column'" in err and "its options are csv," in err
    rc, _, err = run(capsys, "verify", "metacsv", "--root", str(csv), "--option", "higher_is_better")
    assert rc == 2 and err.startswith("error: --option 'higher_is_better': expected key=value")


def test_verify_reports_missing_and_corrupt_and_fails(capsys, tmp_path):
    root, _ = make_kadid10k(tmp_path)
    (root / "images" / "I02_09_05.png").unlink()
    truncate(root / "images" / "I03_25_01.png", 0.3)
    rc, out, _ = run(capsys, "verify", "kadid10k", "--root", str(root))
    assert rc == 1
    assert "30 listed, 28 usable, 1 missing, 1 unreadable" in out
    assert "missing: images/I02_09_05.png" in out and "unreadable: images/I03_25_01.png" in out
    assert "result: 2 problem(s)" in out
    rc, out, _ = run(capsys, "verify", "kadid10k", "--root", str(root), "--skip-unreadable")
    assert rc == 0 and "2 image(s) skipped as asked" in out
    rc, out, _ = run(capsys, "verify", "kadid10k", "--root", str(root), "--no-check-images")
    assert rc == 1 and "not decoded" in out and "1 missing image(s)" in out and "unreadable" not in out


def test_verify_unreadable_layout_exits_2_without_traceback(capsys, tmp_path):
    rc, out, err = run(capsys, "verify", "spaq", "--root", str(tmp_path))
    assert rc == 2 and out == ""
    assert err.startswith(
        "error: spaq: label file 'Annotations/MOS and Image attribute scores.xlsx' not found"
    )
    assert "Traceback" not in err


def test_verify_score_out_of_range_exits_2(capsys, tmp_path):
    root, _ = make_koniq10k(tmp_path)
    path = root / "koniq10k_scores_and_distributions.csv"
    path.write_text(path.read_text().replace(",4.31,", ",7,"))
    rc, _, err = run(capsys, "verify", "koniq10k", "--root", str(root))
    assert rc == 2 and "outside the published MOS range [1, 5]" in err


def test_data_needs_a_sub_command(capsys):
    with pytest.raises(SystemExit):
        main(["data"])
    with pytest.raises(SystemExit):
        main(["data", "verify", "nope", "--root", "."])
