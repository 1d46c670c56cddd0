"""Bad label files and images: every problem is a documented error naming the file, row and fix (issue 13).

Each test is one case a careful user or an adversary met: a .mat that crashes scipy, paths outside the root,
blank or header-only label files, names differing only in case, unknown labels, UTF-16 text, FIFOs, images that
would cost gigabytes.
"""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest
from fixtures_official import make_clive, make_csiq, make_kadid10k, make_metacsv, write_image, write_xlsx
from PIL import Image, ImageFile

from mmpiqa.data import images as images_module
from mmpiqa.data.images import ImageReadError, check_image, load_rgb
from mmpiqa.data.readers import DatasetFormatError, read_dataset
from mmpiqa.data.readers import _parse as parse_module
from mmpiqa.errors import InputError

# bytes of a mutated AllImages_release.mat (offset: value, past the 128-byte header) found by fuzzing: scipy's
# loadmat dies on it with SIGSEGV
CRASHING_MAT_EDITS = {141: 89, 187: 104, 248: 128, 293: 81, 670: 175, 809: 226}


def damage(path, edits: dict[int, int]) -> None:
    data = bytearray(path.read_bytes())
    for offset, value in edits.items():
        data[offset] = value
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------- 1: .mat files


def test_a_mat_file_that_crashes_scipy_is_reported_as_damaged(tmp_path):
    root, _ = make_clive(tmp_path)
    names = next(root.rglob("AllImages_release.mat"))
    damage(names, CRASHING_MAT_EDITS)
    with pytest.raises(
        DatasetFormatError, match=r"AllImages_release\.mat: the file is damaged .*SIGSEGV.*re-down"
    ):
        read_dataset("clive", root)


def test_data_verify_survives_the_crashing_mat_with_exit_2(tmp_path, capsys):
    from mmpiqa.cli import main

    root, _ = make_clive(tmp_path)
    damage(next(root.rglob("AllImages_release.mat")), CRASHING_MAT_EDITS)
    assert main(["data", "verify", "clive", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "damaged" in err and "Traceback" not in err


def test_a_parser_killed_by_any_signal_names_the_signal(tmp_path, monkeypatch):
    root, _ = make_clive(tmp_path)
    child = tmp_path / "dies.py"
    child.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGBUS)\n")
    monkeypatch.setattr(parse_module, "MAT_CHILD", child)
    with pytest.raises(DatasetFormatError, match="crashed with SIGBUS"):
        read_dataset("clive", root)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b[:300], "ends inside an element|damaged at byte"),
        (lambda b: b[:100], "not a MATLAB v5 file"),
        (lambda b: b[:124] + b"\x02\x00" + b[126:], "header is damaged"),
        (lambda b: b[:128] + b"\x0e\x00\x00\x00\xff\xff\xff\x7f" + b[136:], "damaged at byte 128"),
    ],
    ids=["truncated", "no-header", "version", "huge-element"],
)
def test_cheap_mat_checks_come_before_any_parser(tmp_path, monkeypatch, edit, message):
    root, _ = make_clive(tmp_path)
    names = next(root.rglob("AllImages_release.mat"))  # the first file the reader parses
    names.write_bytes(edit(names.read_bytes()))
    monkeypatch.setattr(parse_module, "MAT_CHILD", tmp_path / "never-started.py")
    with pytest.raises(DatasetFormatError, match=message):
        read_dataset("clive", root)


def test_mat_variables_of_the_wrong_kind_name_the_variable(tmp_path):
    from scipy.io import savemat

    root, _ = make_clive(tmp_path)
    savemat(next(root.rglob("AllMOS_release.mat")), {"AllMOS_release": np.array(["a", "b"], dtype=object)})
    with pytest.raises(DatasetFormatError, match="AllMOS_release: expected numbers"):
        read_dataset("clive", root)


# ---------------------------------------------------------------------------------------------- 4: the root


@pytest.mark.parametrize("name", ["../outside/img.png", "{outside}/img.png", "../../../../../../etc/passwd"])
def test_label_files_cannot_name_files_outside_the_root(tmp_path, name):
    csv, _ = make_metacsv(tmp_path)
    outside = tmp_path / "outside"
    write_image(outside / "img.png", 1)
    name = name.format(outside=outside)
    lines = csv.read_text().splitlines()
    lines[2] = f"refs/a.bmp,{name},65.1,validation,training"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetFormatError, match=r"meta\.csv line 3: image name .* points outside the dataset root"
    ):
        read_dataset("metacsv", csv, mos_range=(0, 100), check_images=True)


def test_a_symlink_inside_the_root_stays_allowed(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    real = write_image(tmp_path / "elsewhere" / "img9.bmp", 9)
    (csv.parent / "wn" / "img9.bmp").symlink_to(real)
    csv.write_text(csv.read_text() + "refs/b.bmp,wn/img9.bmp,50.0,test,training\n")
    table = read_dataset("metacsv", csv, mos_range=(0, 100), check_images=True)
    assert "wn/img9.bmp" in set(table["name"])


def test_errors_never_echo_file_contents(tmp_path):
    secret = tmp_path / "img.jpg"
    secret.write_bytes(b"root:x:0:0:SECRET-LINE:/root:/bin/bash\n" * 3)
    with pytest.raises(ImageReadError) as info:
        load_rgb(secret)
    assert "SECRET" not in str(info.value) and "root:x" not in str(info.value)
    (tmp_path / "book.xlsx").write_bytes(b"SECRET-LINE, not a workbook")
    with pytest.raises(DatasetFormatError) as info:
        parse_module.read_xlsx(tmp_path / "book.xlsx", ["image"])
    assert "SECRET" not in str(info.value)


# ---------------------------------------------------------------------------------------------- 5: reader errors


def test_a_whitespace_only_csv(tmp_path):
    root, _ = make_kadid10k(tmp_path)
    (root / "dmos.csv").write_text("   \n\n  \n")
    with pytest.raises(DatasetFormatError, match=r"dmos\.csv: no header line"):
        read_dataset("kadid10k", root)


def test_header_only_kadid_csv_and_csiq_workbook(tmp_path):
    root, _ = make_kadid10k(tmp_path / "k")
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n")
    with pytest.raises(DatasetFormatError, match=r"dmos\.csv: no entries"):
        read_dataset("kadid10k", root)
    csiq, _ = make_csiq(tmp_path / "c")
    write_xlsx(csiq / "csiq.DMOS.xlsx", {"all_by_image": [["image", "dst_type", "dst_lev", "dmos"]]})
    with pytest.raises(DatasetFormatError, match=r"csiq\.DMOS\.xlsx: no entries"):
        read_dataset("csiq", csiq)


def test_names_that_differ_only_in_case(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    csv.write_text(csv.read_text() + "refs/b.bmp,WN/IMG2.BMP,50.0,test,training\n")
    with pytest.raises(DatasetFormatError, match=r"line 5, .*line 6: the names .* differ only in case"):
        read_dataset("metacsv", csv, mos_range=(0, 100))


def test_an_unknown_scene_label_names_the_line(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    lines = csv.read_text().splitlines()
    lines = (
        [lines[0] + ",scenes"]
        + [row + ",animal" for row in lines[1:3]]
        + [row + ",plant|dragons" for row in lines[3:]]
    )
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match="line 4: scenes 'dragons' is not one of"):
        read_dataset("metacsv", csv, mos_range=(0, 100))


def test_a_fractional_dist_level_is_refused_not_truncated(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    lines = csv.read_text().splitlines()
    lines = [lines[0] + ",dist_level"] + [row + ",2.5" for row in lines[1:]]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"line 2: dist_level '2\.5' is not a whole number"):
        read_dataset("metacsv", csv, mos_range=(0, 100))


def test_a_decoder_running_out_of_memory_is_an_image_read_error(tmp_path, monkeypatch):
    path = write_image(tmp_path / "a.jp2", 1, size=(16, 16))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"a\.jp2: cannot decode"):
        load_rgb(path)

    def exhausted(self):
        raise MemoryError

    other = write_image(tmp_path / "b.png", 2)
    monkeypatch.setattr(ImageFile.ImageFile, "load", exhausted)
    with pytest.raises(ImageReadError, match=r"cannot decode \(MemoryError"):
        load_rgb(other)


# ---------------------------------------------------------------------------------------------- 10: file kinds


def test_a_utf16_csv_is_not_called_an_archive(tmp_path):
    csv, _ = make_metacsv(tmp_path)
    text = csv.read_text()
    for encoding in ("utf-16", "utf-16-le"):  # with and without the byte-order mark
        csv.write_bytes(text.encode(encoding))
        with pytest.raises(DatasetFormatError, match="UTF-16 text; save it as UTF-8"):
            read_dataset("metacsv", csv, mos_range=(0, 100))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_fifo_is_not_missing_and_never_blocks(tmp_path):
    root, _ = make_kadid10k(tmp_path / "k")
    (root / "dmos.csv").unlink()
    os.mkfifo(root / "dmos.csv")
    with pytest.raises(DatasetFormatError, match="is a FIFO"):
        read_dataset("kadid10k", root)
    image = tmp_path / "pipe.png"
    os.mkfifo(image)
    with pytest.raises(ImageReadError, match="is a FIFO") as info:
        check_image(image)
    assert "no such" not in str(info.value)


# ---------------------------------------------------------------------------------------------- 6: image cost


def test_pixel_count_is_bounded_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("1", (8000, 7000)).save(path)  # 56 M pixels in a few kB
    assert path.stat().st_size < 20_000
    with pytest.raises(ImageReadError, match="more than MAX_PIXELS"):
        check_image(path)
    monkeypatch.setattr(images_module, "MAX_PIXELS", 10**8)
    assert check_image(path).size == (8000, 7000)


def test_aspect_ratio_is_bounded(tmp_path):
    path = tmp_path / "strip.jpg"
    Image.new("RGB", (4000, 1)).save(path)
    with pytest.raises(ImageReadError, match="aspect ratio beyond 16:1"):
        load_rgb(path)


def test_every_reader_error_is_an_input_error():
    assert issubclass(DatasetFormatError, InputError) and issubclass(DatasetFormatError, ValueError)
    assert issubclass(ImageReadError, InputError) and issubclass(ImageReadError, OSError)


def test_the_mat_child_imports_nothing_of_mmpiqa(tmp_path):
    """It runs with `python -I`: no mmpiqa import, so it starts in a fraction of a second."""
    code = textwrap.dedent(
        f"""
        import runpy, sys
        sys.argv = ["x", "{tmp_path / "none.mat"}", "numbers:a"]
        try:
            runpy.run_path("{parse_module.MAT_CHILD}", run_name="__main__")
        except SystemExit:
            pass
        assert not [m for m in sys.modules if m.startswith("mmpiqa")], "imports mmpiqa"
        """
    )
    import subprocess

    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"error"' in done.stdout
