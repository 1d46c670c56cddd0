import pytest

from mmpiqa import ModelConfig
from mmpiqa.config import ConfigError


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_model_config_round_trips(tmp_path, suffix):
    config = ModelConfig(
        backbone="ViT-B-16", pretrained="openai", scenes=("a", "b"), visual_depth=3, n_ctx=None
    )
    path = config.save(tmp_path / f"model{suffix}")
    assert ModelConfig.load(path) == config


def test_unknown_and_mistyped_fields_are_refused():
    with pytest.raises(ConfigError, match="unknown field.*visual_dept"):
        ModelConfig.from_dict({"visual_dept": 3})
    with pytest.raises(ConfigError, match="visual_depth.*expected int"):
        ModelConfig.from_dict({"visual_depth": "3"})


def test_depth_all_means_every_block_for_both_towers_and_is_stored_as_before(tmp_path):
    """'all' is accepted for text_depth and visual_depth (field, YAML, --set); it is stored as -1, the value
    configs held before, so an old config reads back equal and its run-folder key does not change."""
    from mmpiqa.config import RunConfig

    spelled = ModelConfig(text_depth="all", visual_depth="all")
    assert spelled == ModelConfig(text_depth=-1, visual_depth=-1)
    assert spelled.to_dict()["text_depth"] == spelled.to_dict()["visual_depth"] == -1
    path = tmp_path / "model.yaml"
    path.write_text("text_depth: all\nvisual_depth: 2\n")
    assert ModelConfig.load(path) == ModelConfig(text_depth=-1, visual_depth=2)
    base = RunConfig()
    assert base.with_overrides(["model.visual_depth=all"]).key() == base.key()  # the default is every block
    old = base.with_overrides(["model.text_depth=-1"])  # as a stored config of an older version holds it
    assert old.with_overrides(["model.text_depth=all"]).key() == old.key()
    for bad in ("most", -2, True, 1.5):
        with pytest.raises(ConfigError, match='text_depth.*"all"'):
            ModelConfig(text_depth=bad)


def test_reader_options_enter_the_key_only_when_given():
    """An empty `data.reader_options` leaves the key as it was before the field existed, so no run folder made
    earlier is re-keyed; given options are part of the key and round-trip through the saved config."""
    import json

    from mmpiqa.config import RunConfig

    base = RunConfig()
    # the key of the default config, unchanged by reader_options; a deliberate change of a default or of
    # config.SPLIT_SCHEME changes it too (update it then; scheme 1 gave c448dbd989)
    assert base.key() == "d7971d9321"
    metacsv = base.with_overrides(["data.dataset=metacsv", "data.root=meta.csv"])
    flipped = metacsv.with_overrides(["data.reader_options={mos_range: [0, 100], higher_is_better: false}"])
    assert flipped.data.reader_options == {"mos_range": [0, 100], "higher_is_better": False}
    assert flipped.key() != metacsv.key()
    assert RunConfig.from_dict(json.loads(flipped.to_json())) == flipped
    for bad in ("text", "[mos_col]", "{1: mos}"):
        with pytest.raises(ConfigError, match="reader_options=.*: a mapping"):
            base.with_overrides([f"data.reader_options={bad}"])
