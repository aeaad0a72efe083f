import pytest

from cpm.config import Config, config_from_dict, load_config, parse_override
from cpm.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "[model]\nstages = 6\n[train]\nlr = 1\n")
    config = load_config(path, ["train.lr=0.5", "train.intermediate_supervision=false", 'train.name="x y"'])
    assert config.model.stages == 6
    assert config.train.lr == 0.5 and isinstance(config.train.lr, float)
    assert config.train.intermediate_supervision is False
    assert config.train.name == "x y"
    assert config.data.input_size == Config().data.input_size


def test_override_values_are_read_as_toml_else_as_strings():
    assert parse_override("train.device=cpu") == {"train": {"device": "cpu"}}
    assert parse_override("data.scale_range=[0.7, 1.3]") == {"data": {"scale_range": [0.7, 1.3]}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("lr=1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nlerning_rate = 0.1\n", "unknown config key train.lerning_rate"),
        ("[trian]\nlr = 0.1\n", r"unknown config section \[trian\]"),
        ("[model]\nstages = 'four'\n", "model.stages: expected an integer"),
        ("[model]\nstages = 0\n", r"model.stages: 0 must be in \[1, 6\]"),
        ("[model]\nsigma = -1.0\n", "targets.sigma: -1.0 must be >= "),
        ("[train]\nchannels_last = 1\n", "train.channels_last: expected true or false"),
        ("[train]\noptimizer = 'adam'\n", "train.optimizer: 'adam' is not one of adamw, sgd"),
        ("[data]\nscale_range = [1.2, 0.8]\n", "data.scale_range"),
        ("[data]\ninput_size = 100\n", "data.input_size: 100 is not a multiple of model.stride"),
        ("[model]\ntrunk_widths = [8, 8]\n", "model.trunk_widths"),
        ("[train]\nstage_weights = [1.0]\n", "train.stage_weights: 1 weights given for 4 stages"),
        ("[train\nlr = 1\n", "invalid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = load_config(None, ["model.stages=2", "data.scale_range=[0.9, 1.1]", "train.stage_weights=[0.5, 1]"])
    path = write(tmp_path, config.to_toml())
    assert load_config(path) == config
    assert config_from_dict(config.to_dict()) == config


def test_a_keys_choices_are_its_literal_and_a_table_that_builds_other_names_is_refused():
    """The values a key accepts are its field's Literal (what validate and docs/configuration.md read); a table that
    builds the parts a key names is checked against that Literal where it is defined (`check_names`)."""
    import typing

    from cpm.config import Head, TrainConfig, check_names, choices

    assert choices(typing.get_type_hints(TrainConfig)["optimizer"]) == ("adamw", "sgd")
    assert choices(int) == ()
    check_names({"integral": 0, "paf": 3, "heatmap": 1, "regression": 2}, Head, "model.head")  # the table's order
    with pytest.raises(TypeError, match=r"model.head: the config accepts \['heatmap', 'integral', 'paf', "
                                        r"'regression'\], its table builds \['heatmap', 'integral', 'paf', "
                                        r"'regression', 'transformer'\]"):
        check_names(["heatmap", "regression", "integral", "paf", "transformer"], Head, "model.head")
    with pytest.raises(ConfigError, match="data.depth.encoding: 'gray' is not one of nearness8, millimetres16"):
        load_config(None, ['data.depth.encoding="gray"'])
