"""Honest splits: reference-disjoint, official, random; leakage checks; files; train subsampling."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mmpiqa.config import ConfigError
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
    # 3 references and 6 random splits: some test reference must be drawn again (the embedded benchmark's case)
    splits = make_splits(synthetic(n_refs=3), n_splits=6, seed=0)
    groups = repeated_tests(splits)
    assert groups and sorted(i for g in groups for i in g) == sorted(set(i for g in groups for i in g))
    for group in groups:
        assert len({splits[i].test for i in group}) == 1
    assert len({splits[g[0]].test for g in groups}) == len(groups)  # one group per repeated test set
    alone = [i for i in range(6) if not any(i in g for g in groups)]
    distinct = {splits[i].test for i in alone} | {splits[g[0]].test for g in groups}
    assert len(distinct) == len(alone) + len(groups)  # every other split tests images of its own
    assert repeated_tests(make_splits(synthetic(), n_splits=3, seed=3)) == []  # 20 references: none repeat
