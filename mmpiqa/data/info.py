"""What we know about each dataset before reading a byte of it: scale, direction, counts, licence, layout.

`DATASETS` is the registry the readers, the `mmpiqa data` command and the data cards share. `licence` is a
one-line summary of what the dataset's own page states (written from the authors' pages, not re-checked by any
test); the cards in data/cards/ say more. Check the page before redistributing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class DatasetInfo:
    """Card facts for one dataset.

    mos_kind names the score as the dataset publishes it ("MOS" or "DMOS"); the direction is
    `higher_is_better` and is never inferred from the name (KADID-10k calls its 1-5 MOS "dmos").
    `mos_range` is the published scale; `mos_bounded` says whether raw scores are guaranteed to lie in it
    (LIVE's DMOS is not: the normalisation then widens to the observed extremes, see `normalise`).
    `synthetic` means distortions were applied to pristine references, so splits must be reference-disjoint.
    """

    name: str
    title: str
    n_images: int | None
    mos_kind: Literal["MOS", "DMOS"]
    mos_range: tuple[float, float]
    higher_is_better: bool
    synthetic: bool
    has_official_split: bool
    licence: str
    url: str
    citation: str
    layout: str
    n_refs: int | None = None
    n_dist_types: int | None = None
    n_levels: int | None = None
    mos_bounded: bool = True
    notes: str = ""
    extra_columns: tuple[str, ...] = field(default=())

    def normalise(self, raw: np.ndarray, norm_range: tuple[float, float] | None = None) -> np.ndarray:
        """Map raw scores to [0, 1] with higher = better, using the published range (or `norm_range`)."""
        lo, hi = norm_range if norm_range is not None else self.mos_range
        x = (np.asarray(raw, dtype=np.float64) - lo) / (hi - lo)
        return x if self.higher_is_better else 1.0 - x

    @property
    def direction(self) -> str:
        return "higher = better" if self.higher_is_better else "lower = better"

    def scale_text(self) -> str:
        lo, hi = self.mos_range
        return f"{self.mos_kind} {_num(lo)}-{_num(hi)}, {self.direction}"

    def card_markdown(self) -> str:
        """A data card built from these facts alone (used when data/cards/NAME.md is not installed)."""
        lines = [
            f"# {self.title} (`{self.name}`)",
            "",
            f"- **Images**: {self.n_images if self.n_images is not None else 'depends on how it is built'}",
            f"- **Score**: {self.scale_text()}; `mos` in the table is rescaled to [0, 1], higher = better",
            f"- **Kind**: {'synthetic distortions of references (reference-disjoint splits)' if self.synthetic else 'no shared references'}",
            f"- **Official split**: {'yes' if self.has_official_split else 'none'}",
            f"- **Licence**: {self.licence}",
            f"- **Download**: {self.url}",
            f"- **Cite**: {self.citation}",
        ]
        if self.notes:
            lines += ["", self.notes]
        lines += [
            "",
            "Expected layout (`--root` points at the top folder, or at its parent):",
            "",
            "```",
            self.layout,
            "```",
        ]
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:g}"


_SYNTH_NOTE = "Splits must be reference-disjoint: no reference content on both sides."

DATASETS: dict[str, DatasetInfo] = {
    "koniq10k": DatasetInfo(
        name="koniq10k",
        title="KonIQ-10k",
        n_images=10073,
        mos_kind="MOS",
        mos_range=(1.0, 5.0),
        higher_is_better=True,
        synthetic=False,
        has_official_split=True,
        licence="research use; CC-licensed photos (YFCC100M)",
        url="http://database.mmsp-kn.de/koniq-10k-database.html",
        citation="V. Hosu, H. Lin, T. Sziranyi, D. Saupe. KonIQ-10k: An ecologically valid database for deep "
        "learning of blind image quality assessment. IEEE TIP 29:4041-4056, 2020.",
        layout="koniq10k/\n  koniq10k_scores_and_distributions.csv   image_name, c1..c5, c_total, MOS, SD, MOS_zscore\n"
        "  koniq10k_distributions_sets.csv         optional (root or metadata/): ..., set = training|validation|test\n"
        "  1024x768/<image_name>                   (or 512x384/ when only the half-size images are there)",
        notes="`mos_raw` is the 1-5 `MOS` column; `MOS_zscore` (0-100) is kept as an extra column.",
        extra_columns=("sd", "mos_zscore"),
    ),
    "kadid10k": DatasetInfo(
        name="kadid10k",
        title="KADID-10k",
        n_images=10125,
        mos_kind="DMOS",
        mos_range=(1.0, 5.0),
        higher_is_better=True,
        synthetic=True,
        has_official_split=False,
        licence="research use; Pixabay source photos",
        url="http://database.mmsp-kn.de/kadid-10k-database.html",
        citation="H. Lin, V. Hosu, D. Saupe. KADID-10k: A large-scale artificially distorted IQA database. "
        "QoMEX 2019.",
        layout="kadid10k/\n  dmos.csv            dist_img, ref_img, dmos, var\n"
        "  images/I01.png, images/I01_01_01.png ...   I<ref>_<type>_<level>.png",
        n_refs=81,
        n_dist_types=25,
        n_levels=5,
        notes="The column is called `dmos` but it is a 1-5 MOS where higher = better; it is not flipped. "
        + _SYNTH_NOTE,
        extra_columns=("var",),
    ),
    "live": DatasetInfo(
        name="live",
        title="LIVE Image Quality Assessment Database, Release 2",
        n_images=779,
        mos_kind="DMOS",
        mos_range=(0.0, 100.0),
        higher_is_better=False,
        synthetic=True,
        has_official_split=False,
        licence="research use with citation; on request (UT Austin)",
        url="https://live.ece.utexas.edu/research/quality/subjective.htm",
        citation="H. R. Sheikh, M. F. Sabir, A. C. Bovik. A statistical evaluation of recent full reference "
        "image quality assessment algorithms. IEEE TIP 15(11):3440-3451, 2006.",
        layout="databaserelease2/\n  dmos.mat            dmos (1x982), orgs (1x982; 1 = undistorted original)\n"
        "  refnames_all.mat    refnames_all (1x982 cell of reference file names)\n"
        "  jp2k/img1..227.bmp  jpeg/img1..233.bmp  wn/ gblur/ fastfading/ img1..174.bmp\n  refimgs/<name>.bmp",
        n_refs=29,
        n_dist_types=5,
        mos_bounded=False,
        notes="982 entries of which 203 are the undistorted originals (orgs == 1), excluded -> 779. DMOS is "
        "flipped. Some DMOS values fall slightly outside 0-100; the [0, 1] rescaling then uses the observed "
        "extremes instead (the range used is in `table.attrs['mos_norm_range']`). " + _SYNTH_NOTE,
    ),
    "csiq": DatasetInfo(
        name="csiq",
        title="CSIQ (Categorical Subjective Image Quality)",
        n_images=866,
        mos_kind="DMOS",
        mos_range=(0.0, 1.0),
        higher_is_better=False,
        synthetic=True,
        has_official_split=False,
        licence="research use with citation",
        url="https://s2.smu.edu/~eclarson/csiq.html",
        citation="E. C. Larson, D. M. Chandler. Most apparent distortion: full-reference image quality "
        "assessment and the role of strategy. J. Electronic Imaging 19(1):011006, 2010.",
        layout="CSIQ/\n  csiq.DMOS.xlsx      sheet all_by_image: image, dst_idx, dst_type, dst_lev, dmos_std, dmos\n"
        "  dst_imgs/awgn|jpeg|jpeg2000|fnoise|blur|contrast/<image>.<TYPE>.<level>.png\n  src_imgs/<image>.png",
        n_refs=30,
        n_dist_types=6,
        n_levels=5,
        notes="DMOS in [0, 1] is flipped. Folder and file names are matched case-insensitively. "
        + _SYNTH_NOTE,
        extra_columns=("dmos_std",),
    ),
    "tid2013": DatasetInfo(
        name="tid2013",
        title="TID2013",
        n_images=3000,
        mos_kind="MOS",
        mos_range=(0.0, 9.0),
        higher_is_better=True,
        synthetic=True,
        has_official_split=False,
        licence="non-commercial research with citation",
        url="https://www.ponomarenko.info/tid2013.htm",
        citation="N. Ponomarenko et al. Image database TID2013: Peculiarities, results and perspectives. "
        "Signal Processing: Image Communication 30:57-77, 2015.",
        layout="tid2013/\n  mos_with_names.txt      '<MOS> <file name>' per line\n"
        "  distorted_images/i01_01_1.bmp ...   i<ref>_<type>_<level>.bmp (case varies: I25, .BMP)\n"
        "  reference_images/I01.BMP ...",
        n_refs=25,
        n_dist_types=24,
        n_levels=5,
        notes="File names are matched case-insensitively (the release mixes i/I and .bmp/.BMP). "
        + _SYNTH_NOTE,
    ),
    "clive": DatasetInfo(
        name="clive",
        title="LIVE In the Wild Image Quality Challenge (CLIVE)",
        n_images=1162,
        mos_kind="MOS",
        mos_range=(0.0, 100.0),
        higher_is_better=True,
        synthetic=False,
        has_official_split=False,
        licence="research use with citation; on request (UT Austin)",
        url="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
        citation="D. Ghadiyaram, A. C. Bovik. Massive online crowdsourced study of subjective and objective "
        "picture quality. IEEE TIP 25(1):372-387, 2016.",
        layout="ChallengeDB_release/\n  Data/AllImages_release.mat   AllImages_release (1169 file names)\n"
        "  Data/AllMOS_release.mat      AllMOS_release (1169 MOS)\n  Images/<name>.bmp|.JPG\n"
        "  Images/trainingImages/t1.bmp .. t7.bmp   (the 7 rater-training images, excluded)",
        notes="The first seven entries (t1.bmp-t7.bmp) trained the raters and are excluded -> 1162.",
    ),
    "spaq": DatasetInfo(
        name="spaq",
        title="SPAQ (Smartphone Photography Attribute and Quality)",
        n_images=11125,
        mos_kind="MOS",
        mos_range=(0.0, 100.0),
        higher_is_better=True,
        synthetic=False,
        has_official_split=False,
        licence="research use with citation",
        url="https://github.com/h4nwei/SPAQ",
        citation="Y. Fang, H. Zhu, Y. Zeng, K. Ma, Z. Wang. Perceptual quality assessment of smartphone "
        "photography. CVPR 2020.",
        layout="SPAQ/\n  Annotations/MOS and Image attribute scores.xlsx   Image name, MOS, Brightness, Colorfulness, "
        "Contrast, Noisiness, Sharpness\n  Annotations/Scene category labels.xlsx            optional: Image name, "
        "Animal .. Others (> 0 = present)\n  TestImage/00001.jpg ...",
        notes="SPAQ's nine scene categories are exactly the nine scene classes of the scene branch; an image may "
        "carry several (joined with '|').",
        extra_columns=("brightness", "colorfulness", "contrast", "noisiness", "sharpness"),
    ),
    "agiqa3k": DatasetInfo(
        name="agiqa3k",
        title="AGIQA-3K (AI-generated images)",
        n_images=2982,
        mos_kind="MOS",
        mos_range=(0.0, 5.0),
        higher_is_better=True,
        synthetic=False,
        has_official_split=False,
        licence="labels MIT (GitHub repo); AI-generated images",
        url="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
        citation="C. Li, Z. Zhang, H. Wu, W. Sun, X. Min, X. Liu, G. Zhai, W. Lin. AGIQA-3K: An open database "
        "for AI-generated image quality assessment. IEEE TCSVT, 2023.",
        layout="AGIQA-3K/\n  data.csv   name, prompt, adj1, adj2, style, mos_quality, std_quality, mos_align, std_align\n"
        "  <name>.jpg   images beside data.csv, or in AGIQA-3K/ or images/ below it",
        notes="`mos_raw` is `mos_quality`. Images generated from the same prompt share `ref` (the prompt), so "
        "reference-grouped splits keep a prompt on one side.",
        extra_columns=("prompt", "std_quality", "mos_align", "std_align"),
    ),
    "metacsv": DatasetInfo(
        name="metacsv",
        title="A pyiqa-style meta CSV",
        n_images=None,
        mos_kind="MOS",
        mos_range=(0.0, 1.0),
        higher_is_better=True,
        synthetic=False,
        has_official_split=False,
        licence="that of the images it lists",
        url="(your own file)",
        citation="-",
        layout="<root>/\n  meta.csv     name|img_name|dist_name, mos|dmos|score, optional ref_name, split, ...\n"
        "  <name>       image paths relative to <root> (or to --image-root)",
        notes="Give the score range (`mos_range=`) and direction (`higher_is_better=`); without a range the "
        "observed min/max is used and said so.",
    ),
    "embedded": DatasetInfo(
        name="embedded",
        title="Embedded synthetic benchmark (package-shipped photos)",
        n_images=None,
        mos_kind="MOS",
        mos_range=(0.0, 1.0),
        higher_is_better=True,
        synthetic=True,
        has_official_split=False,
        licence="public-domain / CC0 source photos (scikit-image, matplotlib)",
        url="(none: built locally by mmpiqa.data.embedded, no download)",
        citation="this project; the full-reference metrics behind the pseudo-MOS are cited in its card",
        layout="<cache>/   written by mmpiqa.data.embedded (images + labels), rebuilt deterministically",
        notes="A pseudo-MOS from full-reference metrics, not human opinion. " + _SYNTH_NOTE,
    ),
}
