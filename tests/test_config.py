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
