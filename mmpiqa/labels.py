"""Label vocabularies shared by the data readers and the text branches, and the keys a batch carries labels under.

They live apart from both so that the model never imports the data package (and vice versa): each side takes
its class names from here, and a class list in a config is matched against dataset labels by name. Likewise
the dataset writes each label under its key in `BATCH_KEYS` and the training loss reads it from there.
"""

# label -> the key of a dataset item (and so of a batch) that holds it: what `mmpiqa.data.dataset.IQADataset`
# emits and `mmpiqa.train.losses.total_loss` reads.
BATCH_KEYS: dict[str, str] = {
    "mos": "mos",  # (N,) float, normalised MOS (higher = better)
    "group": "dataset",  # (N,) int dataset id, or a list of dataset names; optional
    "scene": "scenes",  # (N, n_scene) multi-hot float/int; all-zero row = unknown
    "distortion": "distortion",  # (N,) long distortion-group index, -1 = unknown
}

# The default scene classes of the scene branch (LIQE's nine).
SCENE_CLASSES: tuple[str, ...] = (
    "animal",
    "cityscape",
    "human",
    "indoor scene",
    "landscape",
    "night scene",
    "plant",
    "still-life",
    "others",
)
# The default distortion groups of the distortion branch: KADID/TID families grouped into eleven.
DISTORTION_GROUPS: tuple[str, ...] = (
    "blur",
    "colour",
    "contrast",
    "JPEG",
    "JPEG2000",
    "noise",
    "over-exposure",
    "under-exposure",
    "quantisation",
    "spatial",
    "other",
)
# Quality level words, worst to best, read out as an expectation over [0, 1].
QUALITY_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "perfect")
# CLIP-IQA's antonym pair: (positive, negative).
ANTONYMS: tuple[str, str] = ("good", "bad")
