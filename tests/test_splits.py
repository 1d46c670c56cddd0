"""Honest splits: reference-disjoint, official, random; leakage checks; files; train subsampling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmpiqa.config import SPLIT_SCHEME, ConfigError, RunConfig
from mmpiqa.data.splits import (
    LeakageError,
    Split,
    check_no_leakage,
    choose_protocol,
    load_splits,
    make_splits,
    repeated_tests,
    save_splits,
    subsample_train,
)


def synthetic(n_refs=20, per_ref=6, dataset="toy"):
    rows = [
        dict(dataset=dataset, name=f"d/r{r:02d}_{k}.png", ref=f"r{r:02d}", split="", mos=0.5)
        for r in range(n_refs)
        for k in range(per_ref)
    ]
    return pd.DataFrame(rows)


def authentic(n=50):
    return pd.DataFrame(
        dict(
            dataset="auth",
            name=[f"i{k}.jpg" for k in range(n)],
            ref=[f"i{k}.jpg" for k in range(n)],
            split="",
            mos=0.5,
        )
    )


def test_auto_protocol_rule():
    assert choose_protocol(synthetic()) == "ref"
    assert choose_protocol(authentic()) == "random"
    t = authentic(10)
    t["split"] = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert choose_protocol(t) == "official"
    t.loc[0, "split"] = ""
    with pytest.raises(ValueError, match="filled on 9 of 10"):
        choose_protocol(t)


def test_reference_disjoint_splits():
    table = synthetic()
    splits = make_splits(table, n_splits=10, seed=3)
    assert len(splits) == 10
    ref_of = dict(zip(table["name"], table["ref"], strict=True))
    for s in splits:
        assert s.by == "ref" and s.dataset == "toy" and s.fractions == (0.7, 0.1, 0.2)
        assert all(len(p) > 0 for p in (s.train, s.val, s.test))
        assert sorted(s.train + s.val + s.test) == sorted(table["name"])
        refs = [{ref_of[n] for n in part} for part in (s.train, s.val, s.test)]
        assert not (refs[0] & refs[1] or refs[0] & refs[2] or refs[1] & refs[2])
        assert [len(r) for r in refs] == [14, 2, 4]
        check_no_leakage(table, s)
    assert len({s.test for s in splits}) > 1  # different splits differ


def test_splits_are_deterministic_and_prefix_stable():
    table = synthetic()
    assert make_splits(table, n_splits=5, seed=1) == make_splits(table, n_splits=5, seed=1)
    assert make_splits(table, n_splits=3, seed=1) == make_splits(table, n_splits=5, seed=1)[:3]
    assert make_splits(table, n_splits=1, seed=1) != make_splits(table, n_splits=1, seed=2)


def test_random_and_tiny_tables():
    s = make_splits(authentic(50), n_splits=2)[0]
    assert s.by == "random" and s.sizes() == {"train": 35, "val": 5, "test": 10}
    tiny = make_splits(synthetic(n_refs=3), n_splits=1)[0]
    assert all(len(p) == 6 for p in (tiny.train, tiny.val, tiny.test))
    with pytest.raises(ValueError, match="at least 3 groups"):
        make_splits(synthetic(n_refs=2))


def test_official_split_and_carved_validation():
    t = authentic(20)
    t["split"] = ["train"] * 12 + ["val"] * 3 + ["test"] * 5
    (s,) = make_splits(t, n_splits=10)
    assert s.by == "official" and s.sizes() == {"train": 12, "val": 3, "test": 5}
    t["split"] = ["train"] * 15 + ["test"] * 5
    (s,) = make_splits(t, seed=4)
    assert s.sizes()["val"] >= 1 and s.sizes()["train"] + s.sizes()["val"] == 15
    assert set(s.test) == set(t["name"][15:])
    check_no_leakage(t, s)


def test_leakage_is_detected():
    table = synthetic(n_refs=5, per_ref=2)
    good = make_splits(table, n_splits=1)[0]
    moved = good.test[0]
    bad = Split(0, 0, (*good.train, moved), good.val, good.test[1:], "ref")
    with pytest.raises(LeakageError) as err:
        check_no_leakage(table, bad)
    ref = table.set_index("name").loc[moved, "ref"]
    msg = str(err.value)
    assert repr(ref) in msg and "train" in msg and "test" in msg
    twice = Split(0, 0, good.train, (*good.val, good.train[0]), good.test, "ref")
    with pytest.raises(LeakageError, match="listed twice"):
        check_no_leakage(table, twice)
    with pytest.raises(ValueError, match="not in the table"):
        check_no_leakage(table, Split(0, 0, ("nope",), good.val, good.test, "ref"))


def test_splits_file_round_trip(tmp_path):
    splits = make_splits(synthetic(), n_splits=4, seed=9)
    splits[1] = subsample_train(splits[1], fraction=0.5, seed=2)
    path = save_splits(splits, tmp_path / "runs" / "splits.json")
    assert load_splits(path) == splits
    doc = json.loads(path.read_text())
    assert doc["dataset"] == "toy" and doc["protocol"]["by"] == "ref" and doc["protocol"]["n_splits"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]  # no temp file left behind
    renamed = load_splits(save_splits([s for s in splits], tmp_path / "named.json", dataset="kadid10k"))
    assert json.loads((tmp_path / "named.json").read_text())["dataset"] == "kadid10k"
    assert [s.train for s in renamed] == [s.train for s in splits]
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a splits file"):
        load_splits(tmp_path / "other.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a splits file"):
        load_splits(tmp_path / "garbage.json")


def test_subsample_train_only_and_reproducible():
    s = make_splits(synthetic(), n_splits=2, seed=0)[0]
    a = subsample_train(s, fraction=0.25, seed=5)
    assert a == subsample_train(s, fraction=0.25, seed=5)
    assert a.val == s.val and a.test == s.test
    assert set(a.train) <= set(s.train) and len(a.train) == round(0.25 * len(s.train))
    assert a.subsample == "fraction=0.25,seed=5"
    bigger = subsample_train(s, fraction=0.5, seed=5)
    assert set(a.train) <= set(bigger.train)  # nested
    assert subsample_train(s, fraction=0.25, seed=6).train != a.train
    assert len(subsample_train(s, n=7, seed=0).train) == 7
    with pytest.raises(ValueError, match="exactly one"):
        subsample_train(s)
    with pytest.raises(ValueError, match="n must be"):
        subsample_train(s, n=10_000)
    for fraction in (0, 1.5):  # chapter 08's fractions reach here first: the message names the setting
        with pytest.raises(
            ConfigError, match=rf"train_fraction={fraction}: a fraction of the training part in"
        ):
            subsample_train(s, fraction=fraction, seed=0)


def test_a_source_photo_stays_on_one_side():
    # 12 content crops cut from 6 photos: crops of one photo are not independent, so a split keeps photos whole
    table = synthetic(n_refs=12)
    table["source"] = [f"photo{int(r[1:]) // 2}" for r in table["ref"]]
    source_of = dict(zip(table["name"], table["source"], strict=True))
    for s in make_splits(table, n_splits=8, seed=0):
        sides = [{source_of[n] for n in part} for part in (s.train, s.val, s.test)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        check_no_leakage(table, s)
    by_ref = make_splits(table.drop(columns="source"), n_splits=1, seed=0)[0]
    leaky = next(  # a ref-disjoint split of the same table that puts one photo on two sides
        s
        for s in make_splits(table.drop(columns="source"), n_splits=50, seed=1)
        if {source_of[n] for n in s.test} & {source_of[n] for n in s.train}
    )
    check_no_leakage(table.drop(columns="source"), by_ref)  # by content alone it is fine...
    with pytest.raises(LeakageError, match="photo"):
        check_no_leakage(table, leaky)  # ...but not once the table says which photo each crop came from


def test_splits_that_test_the_same_images_are_found():
    # 3 references and 6 splits: two rotations, so each test reference comes twice ('small' in the workbook)
    splits = make_splits(synthetic(n_refs=3), n_splits=6, seed=0)
    groups = repeated_tests(splits)
    assert sorted(len(g) for g in groups) == [2, 2, 2]
    assert groups and sorted(i for g in groups for i in g) == sorted(set(i for g in groups for i in g))
    for group in groups:
        assert len({splits[i].test for i in group}) == 1
    assert len({splits[g[0]].test for g in groups}) == len(groups)  # one group per repeated test set
    alone = [i for i in range(6) if not any(i in g for g in groups)]
    distinct = {splits[i].test for i in alone} | {splits[g[0]].test for g in groups}
    assert len(distinct) == len(alone) + len(groups)  # every other split tests images of its own
    assert repeated_tests(make_splits(synthetic(), n_splits=3, seed=3)) == []  # 20 references: none repeat


def test_splits_rotate_so_a_cycle_tests_every_block_once():
    # 7 source photos with one test photo a split (the embedded benchmark's default): 7 splits test all 7
    table = synthetic(n_refs=14)
    table["source"] = [f"photo{int(r[1:]) // 2}" for r in table["ref"]]
    source_of = dict(zip(table["name"], table["source"], strict=True))
    splits = make_splits(table, n_splits=9, seed=5)
    tested = [frozenset(source_of[n] for n in s.test) for s in splits]
    assert all(len(t) == 1 for t in tested)
    assert len(set(tested[:7])) == 7  # one cycle: every photo tested once
    assert repeated_tests(splits[:7]) == [] and repeated_tests(splits)  # the next cycle starts again
    validated = [frozenset(source_of[n] for n in s.val) for s in splits]
    assert validated[:6] == tested[1:7]  # one validation photo a split: the one the next split tests
    for s in splits:
        check_no_leakage(table, s)
        assert s.sizes() == splits[0].sizes()  # every photo has 12 images: the parts keep their sizes
    # 20 references, 4 test references a split: 5 disjoint test blocks, then a reshuffled cycle
    refs = [{n.split("/")[1][:3] for n in s.test} for s in make_splits(synthetic(), n_splits=6, seed=2)]
    assert all(len(r) == 4 for r in refs)
    assert len(set().union(*refs[:5])) == 20  # the first five test every reference exactly once


def test_rotation_keeps_split_zero_and_the_splits_file_names_the_scheme(tmp_path, monkeypatch):
    # split 0 is the draw it was before splits rotated (scheme 1: split i from default_rng([seed, i])), so a
    # one-split run tests the same images as before
    table = synthetic()
    unique = sorted(set(table["ref"]))
    order = np.random.default_rng([7, 0]).permutation(len(unique))
    first = make_splits(table, n_splits=3, seed=7)[0]
    assert {n.split("/")[1][:3] for n in first.test} == {unique[k] for k in order[-4:]}
    assert {n.split("/")[1][:3] for n in first.val} == {unique[k] for k in order[-6:-4]}
    path = save_splits(make_splits(table, n_splits=2, seed=7), tmp_path / "splits.json")
    assert json.loads(path.read_text())["protocol"]["scheme"] == SPLIT_SCHEME == 2
    assert load_splits(path) == make_splits(table, n_splits=2, seed=7)
    # the scheme is part of every run key: a run folder made under the old draw is never read back as this one
    import mmpiqa.config as config_module

    now = RunConfig().key()
    monkeypatch.setattr(config_module, "SPLIT_SCHEME", 1)
    assert RunConfig().key() != now
