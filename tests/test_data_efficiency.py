"""Data efficiency: `data.train_fraction` keeps a subset of each split's training part.

The subset must be the same for every arm of a study (same split and seed, whatever the model or training seed),
nested across fractions, disjoint from val and test (no reference content shared either), and val/test untouched.
"""

import pytest

from mmpiqa.config import ConfigError, DataConfig, ModelConfig, RunConfig
from mmpiqa.data.splits import check_no_leakage, load_splits, make_splits, save_splits, subsample_train
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import load_table, part_datasets
from mmpiqa.workbook.probe import probe_config

DATA = DataConfig(dataset="embedded", size="small", n_splits=3, train_crops=1, test_crop="center")


@pytest.fixture(scope="module")
def table():
    return load_table(DATA, progress=False)


@pytest.fixture(scope="module")
def splits(table):
    return make_splits(table, n_splits=3, seed=DATA.split_seed, fractions=DATA.fractions, by="random")


@pytest.fixture(scope="module")
def arms():
    """Three arms of a study: MP-IQE (deep visual prompts), text-only prompts, zero-shot."""
    configs = [
        ModelConfig(backbone="micro"),
        ModelConfig(backbone="micro", visual_depth=0),
        ModelConfig(backbone="micro", text_depth=0, visual_depth=0, head="levels"),
    ]
    return [build_model(c) for c in configs]


def test_every_arm_sees_the_same_training_subset(table, splits, arms):
    data = DATA.replace(train_fraction=0.3)
    for split in splits:
        names = {
            (i, seed): part_datasets(table, split, data, model, seed=seed)["train"].names
            for i, model in enumerate(arms)
            for seed in (0, 7)  # the training seed (train.seed + split index) does not move the subset
        }
        first = next(iter(names.values()))
        assert all(n == first for n in names.values())
        assert len(first) == round(0.3 * len(split.train))
        assert set(first) <= set(split.train)


def test_the_linear_probe_sees_the_same_subset_and_splits_as_the_arms(table, splits, arms):
    config = RunConfig(model=ModelConfig(backbone="micro"), data=DATA.replace(train_fraction=0.3))
    probe = probe_config(config)
    assert probe.data == config.data and probe.train.seed == config.train.seed
    for split in splits:
        arm = part_datasets(table, split, config.data, arms[0], seed=0)["train"].names
        assert part_datasets(table, split, probe.data, arms[2], seed=0)["train"].names == arm


def test_subsets_are_nested_across_fractions(splits):
    for split in splits:
        previous: set[str] = set()
        for fraction in (0.05, 0.1, 0.25, 0.5, 1.0):
            kept = set(subsample_train(split, fraction=fraction, seed=split.seed).train)
            assert previous <= kept
            previous = kept
        assert previous == set(split.train)  # 100 % is the whole training part


def test_subsets_are_disjoint_from_val_and_test_which_stay_untouched(table, splits):
    by_ref = make_splits(table, n_splits=3, seed=0, by="ref")  # reference-disjoint protocol as well
    for split in [*splits, *by_ref]:
        for fraction in (0.1, 0.5):
            sub = subsample_train(split, fraction=fraction, seed=split.seed)
            assert sub.val == split.val and sub.test == split.test
            assert not set(sub.train) & (set(split.val) | set(split.test))
            if split.by == "ref":
                check_no_leakage(table, sub)  # no reference content on two sides either


def test_subsets_differ_between_splits_and_seeds_but_survive_a_round_trip(tmp_path, splits):
    subsets = [subsample_train(s, fraction=0.3, seed=s.seed).train for s in splits]
    assert len(set(subsets)) == len(subsets)
    other_seed = subsample_train(splits[0], fraction=0.3, seed=splits[0].seed + 1).train
    assert other_seed != subsets[0]
    # a resumed run reads its splits back from splits.json: the subset must not change
    reloaded = load_splits(save_splits(splits, tmp_path / "splits.json"))
    assert [subsample_train(s, fraction=0.3, seed=s.seed).train for s in reloaded] == subsets


def test_train_fraction_is_validated_and_part_of_the_run_key():
    with pytest.raises(ConfigError):
        DataConfig(train_fraction=0.0)
    with pytest.raises(ConfigError):
        DataConfig(train_fraction=1.5)
    a = RunConfig(data=DataConfig(train_fraction=0.5))
    assert a.key() != a.replace(data=a.data.replace(train_fraction=0.25)).key()


def test_the_chapter_gpu_parameters_are_declared_in_the_notebook():
    import ast
    from pathlib import Path

    import nbformat
    import yaml

    root = Path(__file__).parent.parent
    notebook = root / "notebooks" / "08_data_efficiency.ipynb"
    if not notebook.is_file():
        pytest.skip("chapter 08 not written yet")
    cell = next(
        c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", [])
    )
    declared = {n.target.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body}
    gpu = yaml.safe_load((root / "params" / "08_gpu.yaml").read_text())
    assert set(gpu) <= set(declared)
    assert all(type(gpu[k]) is type(declared[k]) for k in gpu if declared[k] != ""), (
        "same types as the defaults"
    )
    assert gpu["n_splits"] == 10 and max(gpu["fractions"]) == 1.0 and min(gpu["fractions"]) <= 0.05
