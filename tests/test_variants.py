"""One MP-IQE factory and one zero-shot recipe, and the configs they make are the ones the demo, the ablation
chapters and the other chapters made before they shared them: run folders are keyed by the config, so a changed
field would silently retrain every complete run on disk.

Each expected config below is spelled out the way its caller built it before `mmpiqa.runs.variants` existed.
"""

import pytest

from mmpiqa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.runs.demo import demo_configs
from mmpiqa.workbook import Backbone, ablation, mpiqe_run, zero_shot_run

TEACHING = Backbone("tiny", "synthetic", "test")
REAL = Backbone("ViT-B-16", "openai", "test")


def _zero_shot(config: RunConfig, head: str) -> RunConfig:
    # Re-keyed on purpose (2026-12): a zero-shot baseline no longer carries the training settings of the arm it
    # was made from, which only made `mmpiqa demo --epochs 6` score the same baseline into a second folder.
    model = config.model.replace(head=head, text_depth=0, visual_depth=0)
    data = config.data.replace(train_fraction=None, train_crops=4)
    train = TrainConfig(
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        device=config.train.device,
        num_workers=config.train.num_workers,
    )
    return RunConfig(name=f"zero-shot-{head}", model=model, data=data, train=train)


def _demo(backbone, pretrained, epochs, size, n_splits, train_fraction) -> list[RunConfig]:
    data = DataConfig(
        dataset="embedded", size=size, n_splits=n_splits, train_fraction=train_fraction, test_crop="center"
    )
    mpiqe = RunConfig(
        name="mpiqe",
        model=ModelConfig(backbone=backbone, pretrained=pretrained),
        data=data,
        train=TrainConfig(epochs=epochs),
    )
    return [mpiqe, _zero_shot(mpiqe, "levels"), _zero_shot(mpiqe, "antonym")]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: demo_configs(), _demo("tiny", "synthetic", 3, "default", 1, 0.5)),  # `mmpiqa demo`
        (lambda: demo_configs("tiny", None, size="small"), _demo("tiny", None, 3, "small", 1, 0.5)),
        (
            lambda: demo_configs("ViT-B-16", "openai", 1, "small", 3, None),
            _demo("ViT-B-16", "openai", 1, "small", 3, None),
        ),
        (lambda: demo_configs(splits=0), _demo("tiny", "synthetic", 3, "default", 1, 0.5)),
    ],
    ids=["demo-default", "demo-random-small", "demo-real", "demo-no-splits"],
)
def test_the_demo_runs_the_configs_it_ran_before(call, expected):
    assert [c.to_dict() for c in call()] == [c.to_dict() for c in expected]


def _chapter(
    backbone,
    *,
    dataset="embedded",
    root=None,
    size="small",
    epochs=3,
    batch_size=16,
    n_splits=1,
    train_fraction=None,
    device="auto",
    **model,
) -> RunConfig:
    return RunConfig(
        name="mpiqe",
        model=ModelConfig(backbone=backbone.name, pretrained=backbone.pretrained, **model),
        data=DataConfig(
            dataset=dataset, root=root, size=size, n_splits=n_splits, train_fraction=train_fraction
        ),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, device=device),
    )


def _ablation(
    backbone,
    *,
    dataset="embedded",
    size="default",
    batch_size=32,
    n_splits=3,
    split_seed=0,
    train_crops=4,
    test_crop="grid",
    num_workers=0,
    **rest,
) -> RunConfig:
    config = _chapter(
        backbone,
        dataset=dataset,
        size=size if dataset == "embedded" else "default",
        batch_size=batch_size,
        n_splits=n_splits,
        **rest,
    )
    data = config.data.replace(split_seed=split_seed, train_crops=train_crops, test_crop=test_crop)
    return config.replace(data=data, train=config.train.replace(num_workers=num_workers))


CHAPTER_04 = dict(
    dataset="embedded",
    size="small",
    epochs=1,
    batch_size=16,
    n_splits=3,
    split_seed=2,
    train_crops=2,
    test_crop="center",
    device="cpu",
    num_workers=2,
)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: mpiqe_run(TEACHING), _chapter(TEACHING)),  # chapter 03's smoke run, reused by 06 and 07
        (lambda: mpiqe_run(TEACHING, train_fraction=1.0), _chapter(TEACHING)),  # one spelling of "all"
        (
            lambda: mpiqe_run(
                REAL, dataset="kadid10k", root="/d", epochs=20, n_splits=10, train_fraction=0.5
            ),
            _chapter(REAL, dataset="kadid10k", root="/d", epochs=20, n_splits=10, train_fraction=0.5),
        ),
        (
            lambda: mpiqe_run(TEACHING, visual_depth=3, head="levels"),
            _chapter(TEACHING, visual_depth=3, head="levels"),
        ),
        (lambda: zero_shot_run(mpiqe_run(REAL)), _zero_shot(_chapter(REAL), "levels")),
        (lambda: ablation.base_config(TEACHING), _ablation(TEACHING)),
        (lambda: ablation.base_config(TEACHING, visual_depth=-1), _ablation(TEACHING, visual_depth=-1)),
        (lambda: ablation.base_config(TEACHING, **CHAPTER_04), _ablation(TEACHING, **CHAPTER_04)),
        (
            lambda: ablation.base_config(
                REAL, dataset="kadid10k", root="/d", size="small", train_fraction=0.25
            ),
            _ablation(REAL, dataset="kadid10k", root="/d", train_fraction=0.25),
        ),
        (lambda: zero_shot_run(ablation.base_config(TEACHING)), _zero_shot(_ablation(TEACHING), "levels")),
    ],
    ids=[
        "03",
        "03-all",
        "06-kadid",
        "arm",
        "zero-shot",
        "ablation",
        "ablation-arm",
        "04",
        "ablation-kadid",
        "ablation-zero-shot",
    ],
)
def test_the_chapters_run_the_configs_they_ran_before(call, expected):
    assert call().to_dict() == expected.to_dict()


def test_demo_overrides_change_the_trained_arm_and_the_baselines_follow_its_data():
    mpiqe, levels, antonym = demo_configs(
        size="small", overrides=["model.visual_depth=3", "data.n_splits=2", "train.lr=0.01"]
    )
    assert (mpiqe.model.visual_depth, mpiqe.data.n_splits, mpiqe.train.lr) == (3, 2, 0.01)
    for baseline, head in ((levels, "levels"), (antonym, "antonym")):
        assert baseline.to_dict() == _zero_shot(mpiqe, head).to_dict()


def test_banner_says_random_weights_for_an_empty_pretrained():
    """Papermill cannot pass None: pretrained='' is random weights, and the banner must not call them CLIP."""
    from mmpiqa.workbook import choose_backbone

    random_arm = choose_backbone("tiny", "")
    assert random_arm.pretrained is None and not random_arm.is_real
    assert "RANDOM weights" in random_arm.banner() and "real CLIP features" not in random_arm.banner()
    teaching = choose_backbone("tiny", "synthetic")
    assert teaching.is_teaching_clip and "RANDOM" not in teaching.banner()


def test_arms_that_differ_only_in_training_share_one_zero_shot_folder():
    base = mpiqe_run(TEACHING, epochs=3, train_fraction=0.5)
    same = [
        mpiqe_run(TEACHING, epochs=6),
        base.with_overrides({"train.lr": 1e-3, "train.quality_loss": "l1", "data.train_crops": 2}),
    ]
    assert {zero_shot_run(arm).key() for arm in [base, *same]} == {zero_shot_run(base).key()}
    different = [
        base.with_overrides({"data.split_seed": 1}),
        base.with_overrides({"data.test_crop": "center"}),
        base.with_overrides({"train.batch_size": 8}),  # the evaluation batch follows it
        mpiqe_run(REAL, epochs=3, train_fraction=0.5),
    ]
    keys = {zero_shot_run(arm).key() for arm in different}
    assert len(keys) == len(different) and zero_shot_run(base).key() not in keys
    assert zero_shot_run(base, "antonym").key() != zero_shot_run(base).key()


def test_chapter_parameters_are_checked_as_config_fields():
    """The factories build their configs as a config file is read: a parameter of the wrong type or range is a
    ConfigError naming the field, never a silent "all" or a failure deep inside a run."""
    from mmpiqa.config import ConfigError

    assert mpiqe_run(TEACHING, train_fraction=1.0).data.train_fraction is None  # 1.0 and None: all of it
    for changes, message in [
        ({"n_splits": 1.5}, "data.n_splits: expected int, got 1.5"),
        ({"epochs": "3"}, "train.epochs: expected int, got '3'"),
        ({"train_fraction": 1.5}, r"train_fraction=1.5: in \(0, 1\]"),
        ({"split_seed": -1}, "split_seed=-1: a whole number >= 0"),
        ({"visual_depth": 2.0}, "model.visual_depth: expected int, got 2.0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            mpiqe_run(TEACHING, **changes)
    assert mpiqe_run(TEACHING, root="").data.root is None  # a notebook's '' is no folder, never "."


def test_whole_number_names_the_parameter_and_what_it_accepts():
    import numpy as np

    from mmpiqa.config import ConfigError
    from mmpiqa.workbook import whole_number

    assert whole_number("steps", 3, 1) == 3 and whole_number("k", np.int64(2), 1, 2) == 2
    for value in (0, 1.0, True, "2", None):
        with pytest.raises(ConfigError, match=f"steps={value!r}: timed steps, a whole number >= 1$"):
            whole_number("steps", value, 1, what="timed steps")
    with pytest.raises(ConfigError, match=r"^k=9: a whole number from 1 to 8 \(the vocabulary\)$"):
        whole_number("k", 9, 1, 8, why="the vocabulary")
    with pytest.raises(ConfigError, match="n=1: a whole number from 1 to 0"):  # nothing to choose from
        whole_number("n", 1, 1, 0)


def test_an_empty_runs_folder_is_refused_not_read_as_notebooks(tmp_path, monkeypatch):
    from mmpiqa.config import ConfigError
    from mmpiqa.workbook import runs_dir

    monkeypatch.chdir(tmp_path)
    assert runs_dir("runs/workbook").resolve() == (tmp_path / "runs" / "workbook").resolve()  # made
    for empty in ("", " "):  # Path('') is '.': the notebooks' own folder
        with pytest.raises(ConfigError, match=f"runs='{empty}': the folder of the workbook's run folders"):
            runs_dir(empty)


def test_a_backbone_that_cannot_be_built_is_refused_before_the_banner_describes_it():
    from mmpiqa.config import ConfigError
    from mmpiqa.model.backbone import UnsupportedBackbone
    from mmpiqa.workbook import choose_backbone

    with pytest.raises(UnsupportedBackbone, match="Unknown backbone 'ViT-B-99'"):
        choose_backbone("ViT-B-99", "")
    with pytest.raises(ConfigError, match="pretrained='openai' with backbone='auto'"):  # would be ignored
        choose_backbone("auto", "openai")
