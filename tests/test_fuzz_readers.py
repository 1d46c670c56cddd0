"""Property: random and mutated bytes in any label file or image end in a documented error, never anything else.

Every reader gets its official fixture with one label file replaced by random bytes, a mutation of the real file
(flipped bytes, truncation, spliced text) or random text; the image loader gets mutated PNG, JPEG, BMP, GIF,
TIFF, WebP and JPEG 2000 files. The only outcomes allowed are a table or `InputError` (DatasetFormatError,
ImageReadError): no other exception, and no crash of the process (the .mat readers parse in a child process,
so a parser crash must come back as DatasetFormatError). Budgets are fixed and derandomised: seconds in CI;
``MMPIQA_FUZZ_SCALE=50`` multiplies them for a longer campaign.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
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
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from mmpiqa.data.images import check_image, load_rgb
from mmpiqa.data.readers import read_dataset
from mmpiqa.errors import InputError

# dataset -> (fixture builder, label file relative to the returned root, examples)
LABEL_FILES = {
    "kadid10k": (make_kadid10k, "dmos.csv", 40),
    "koniq10k": (make_koniq10k, "koniq10k_scores_and_distributions.csv", 40),
    "agiqa3k": (make_agiqa3k, "data.csv", 40),
    "tid2013": (make_tid2013, "mos_with_names.txt", 40),
    "metacsv": (make_metacsv, "", 40),
    "csiq": (make_csiq, "csiq.DMOS.xlsx", 25),
    "spaq": (make_spaq, "Annotations/MOS and Image attribute scores.xlsx", 25),
    "live": (make_live, "dmos.mat", 20),
    "clive": (make_clive, "Data/AllImages_release.mat", 20),
}


def mutations(original: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, random text, or the original with flipped bytes, a cut, or text spliced in."""
    n = len(original)

    def flip(edits):
        data = bytearray(original)
        for offset, value in edits:
            data[offset % n] = value
        return bytes(data)

    def splice(args):
        at, text = args
        return original[: at % (n + 1)] + text.encode("utf-8", "surrogatepass") + original[at % (n + 1) :]

    return st.one_of(
        st.binary(max_size=700),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=12).map(flip),
        st.integers(0, n).map(lambda k: original[:k]),
        st.tuples(st.integers(0, n), st.text(max_size=40)).map(splice),
    )


def outcome(call) -> None:
    """Call; a table or an InputError pass, anything else fails the property."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except InputError:
            pass


def budget(n: int):
    return settings(
        max_examples=n * int(os.environ.get("MMPIQA_FUZZ_SCALE", "1")),
        deadline=None,
        derandomize=os.environ.get("MMPIQA_FUZZ_SCALE", "1") == "1",
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("name", list(LABEL_FILES))
def test_mutated_label_files_end_in_a_documented_error(tmp_path_factory, name):
    make, rel, examples = LABEL_FILES[name]
    root, _ = make(tmp_path_factory.mktemp(name))
    label = root / rel if rel else root
    if not label.is_file():  # a reader that accepts the folder above the release
        (label,) = list(root.rglob(Path(rel).name))
    original = label.read_bytes()
    options = {"mos_range": (0, 100)} if name == "metacsv" else {}

    @budget(examples)
    @given(data=mutations(original))
    def prop(data: bytes) -> None:
        label.write_bytes(data)
        outcome(lambda: read_dataset(name, root, check_images=True, **options))

    try:
        prop()
    finally:
        label.write_bytes(original)


def _encoded(fmt: str, **save) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, fmt, **save)
    return buffer.getvalue()


IMAGE_FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF"]
IMAGE_FORMATS += [f for f, feature in (("WEBP", "webp"), ("JPEG2000", "jpg_2000")) if features.check(feature)]


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_mutated_images_end_in_an_image_read_error(tmp_path_factory, fmt):
    path = tmp_path_factory.mktemp("img") / f"x.{fmt.lower()}"
    original = _encoded(fmt)

    @budget(40)
    @given(data=mutations(original))
    def prop(data: bytes) -> None:
        path.write_bytes(data)
        outcome(lambda: load_rgb(path))
        outcome(lambda: check_image(path))

    prop()
