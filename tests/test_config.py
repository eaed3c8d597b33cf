import json
import os
from collections.abc import Callable

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maskrcnn.config import (
    PRESETS,
    Config,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    override,
    parse_value,
    preset,
    validate,
    validate_run,
)
from tests.mutations import cut_short, mutated

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))


def test_round_trip_through_json():
    cfg = ModelConfig(num_classes=4)
    cfg.anchors.sizes = ((8.0,), (16.0,), (32.0,), (64.0,), (128.0,))
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert data["anchors"]["sizes"] == [[8.0], [16.0], [32.0], [64.0], [128.0]]
    back = config_from_dict(ModelConfig, data)
    assert back == cfg
    assert isinstance(back.anchors.sizes, tuple)
    assert isinstance(back.anchors.sizes[0], tuple)


def test_missing_keys_keep_defaults_and_unknown_keys_are_named():
    cfg = config_from_dict(ModelConfig, {"num_classes": 3, "rpn": {"nms_thresh": 0.6}})
    assert cfg.rpn.nms_thresh == 0.6
    assert cfg.rpn.pre_nms_top_n_train == 2000
    with pytest.raises(ValueError, match=r"rpn: unknown keys \['nms'\]"):
        config_from_dict(ModelConfig, {"rpn": {"nms": 0.6}})
    with pytest.raises(ValueError, match=r"rpn.batch_size_per_image: expected an integer, got 2.5"):
        config_from_dict(ModelConfig, {"rpn": {"batch_size_per_image": 2.5}})
    with pytest.raises(ValueError, match=r"backbone.channels_last: expected true or false"):
        config_from_dict(ModelConfig, {"backbone": {"channels_last": 3}})


def test_overrides_parse_command_line_values():
    cfg = override(
        ModelConfig(),
        {
            "rpn.nms_thresh": "0.6",
            "transform.min_size": "[640, 672, 704]",
            "transform.max_size": 1000,
            "backbone.name": "resnet18",
            "backbone.channels_last": "false",
        },
    )
    assert cfg.rpn.nms_thresh == 0.6
    assert cfg.transform.min_size == (640, 672, 704)
    assert cfg.transform.max_size == 1000
    assert cfg.backbone.name == "resnet18"
    assert cfg.backbone.channels_last is False
    assert override(ModelConfig(), {"transform.min_size": "512"}).transform.min_size == (512,)
    with pytest.raises(ValueError, match=r"override 'rpn.nms_threshold': no such key"):
        override(ModelConfig(), {"rpn.nms_threshold": "0.5"})
    with pytest.raises(ValueError, match=r"'model' is not a section"):
        override(ModelConfig(), {"model.rpn.nms_thresh": "0.5"})


def test_validation_names_the_field():
    with pytest.raises(ValueError, match=r"num_classes=1 \(it counts the background"):
        ModelConfig(num_classes=1)
    with pytest.raises(ValueError, match=r"backbone.name='resnet19'"):
        override(ModelConfig(), {"backbone.name": "resnet19"})
    with pytest.raises(
        ValueError, match=r"image_mean / image_std have 3 / 3 values for backbone.in_channels=4"
    ):
        override(ModelConfig(), {"backbone.in_channels": 4})
    with pytest.raises(ValueError, match=r"anchors.sizes has 3 levels"):
        override(ModelConfig(), {"anchors.sizes": "[[32], [64], [128]]"})


def test_one_reading_of_command_line_values():
    from maskrcnn.config import parse_value

    assert parse_value("20") == 20
    assert parse_value("1e-3") == 0.001  # YAML 1.2: a number (PyYAML's 1.1 rules say a string)
    assert parse_value("[640, 800]") == [640, 800]
    assert parse_value("{1: person, 2: car}") == {1: "person", 2: "car"}
    assert parse_value("true") is True
    assert parse_value("null") is None
    for text in ("off", "on", "yes", "no", "none", "images/train", "2024-01-01", ""):
        assert parse_value(text) == text  # YAML 1.1 would give booleans and a date


def test_string_fields_keep_the_text_and_optional_fields_take_none():
    from maskrcnn.config import preset

    cfg = override(
        preset("shapes"),
        {
            "train.amp": "off",  # a string field: not YAML 1.1's False
            "train.weights": "123",  # a path that looks like a number stays a path
            "train.layers": "none",
            "train.max_steps": "none",
            "train.lr": "1e-3",
            "data.train": '"my data.json"',
            "data.train_options.count": "20",  # a free-form mapping: typed by parse_value
        },
    )
    assert cfg.train.amp == "off"
    assert cfg.train.weights == "123"
    assert cfg.train.layers is None
    assert cfg.train.max_steps is None
    assert cfg.train.lr == 0.001
    assert cfg.data.train == "my data.json"
    assert cfg.data.train_options["count"] == 20


def test_config_files_are_read_in_the_same_dialect(tmp_path):
    from maskrcnn.config import load_config, save_config

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n  lr: 1e-3\nmodel:\n  backbone:\n    fpn_norm: none\n")
    cfg = load_config(path)
    assert (cfg.train.amp, cfg.train.lr, cfg.model.backbone.fpn_norm) == ("off", 0.001, "none")
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_val_split_is_a_fraction_instead_of_a_validation_set():
    from maskrcnn.config import preset

    coco = preset("coco")
    assert override(coco, {"data.val_split": "0.2"}).data.val_split == 0.2
    for value in ("0", "1", "1.5"):
        with pytest.raises(ValueError, match=rf"data.val_split={float(value)} \(a fraction in \(0, 1\)"):
            override(coco, {"data.val_split": value})
    with pytest.raises(ValueError, match=r"data.val_split=0.2 and data.val='val.json': give one of them"):
        override(coco, {"data.val_split": "0.2", "data.val": "val.json"})
    with pytest.raises(ValueError, match=r"set data.val_options=\{\} to split the training shapes"):
        override(preset("shapes"), {"data.val_split": "0.2"})
    split = override(preset("shapes"), {"data.val_split": "0.2", "data.val_options": "{}"})
    assert split.data.val_split == 0.2


def test_a_mapping_set_whole_then_by_key_keeps_both():
    from maskrcnn.config import preset

    cfg = override(
        preset("coco"), {"data.train_options": "{image_dir: a, x: 1}", "data.train_options.x": "2"}
    )
    assert cfg.data.train_options == {"image_dir": "a", "x": 2}


# --- fuzzing: broken config files and --set values -----------------------------------------------

PRESET_DICTS = {name: config_to_dict(preset(name)) for name in PRESETS}


def _leaves(doc: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a config dict's values (``train.lr``, ``model.rpn.nms_thresh``, ...)."""
    keys = []
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        keys += _leaves(value, f"{dotted}.") if isinstance(value, dict) and value else [dotted]
    return keys


def _refusal(make: Callable[[], Config]) -> str:
    """The ``ValueError`` message of ``make()``, or "" when it gives a config that passes the model's and
    the run's validation (anything else that comes out fails the test)."""
    try:
        cfg = make()
    except ValueError as e:
        event("refused")
        return str(e)
    validate(cfg.model)
    validate_run(cfg)
    event("accepted")
    return ""


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_broken_config_file_is_a_value_error_naming_the_file(tmp_path_factory, data):
    """Whatever is deleted, retyped or cut short, ``load_config`` (what ``--config`` calls) either gives a
    config that passes its own validation or raises ``ValueError`` naming the file: nothing else."""
    doc = data.draw(mutated(PRESET_DICTS[data.draw(st.sampled_from(sorted(PRESETS)))]))
    text = data.draw(cut_short(yaml.safe_dump(doc)))
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(text)
    message = _refusal(lambda: load_config(path))
    assert not message or str(path) in message


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_set_value_of_any_text_is_taken_or_a_value_error_naming_the_key(data):
    """``--set KEY=TEXT`` for any key of a preset and any text (numbers, lists, NaN, words)."""
    name = data.draw(st.sampled_from(sorted(PRESETS)))
    key = data.draw(st.sampled_from(_leaves(PRESET_DICTS[name])))
    text = data.draw(
        st.one_of(
            st.sampled_from(
                ["nan", "inf", "-inf", "-1", "0", "1e309", "", "none", "[]", "{}", "[1, x]", "true"]
            ),
            st.text(max_size=8),
        )
    )
    message = _refusal(lambda: override(preset(name), {key: text}))
    # The message names the key, or its field as the config's validation words it (``data.batch_size``).
    assert not message or key.rsplit(".", 1)[-1] in message, (key, text, message)


def test_numbers_that_are_no_setting_are_refused():
    # What the fuzzing above found: an integer field given 1e309 (an infinity) crashed in int(), and
    # NaN thresholds were taken (they compare false with everything: a run to an empty model).
    with pytest.raises(ValueError, match=r"model.num_classes: expected int, got inf"):
        override(preset("shapes"), {"model.num_classes": "1e309"})
    for text in ("nan", ".nan", "inf", "-.inf"):
        with pytest.raises(ValueError, match=r"model.rpn.nms_thresh: expected a finite number"):
            override(preset("shapes"), {"model.rpn.nms_thresh": text})


def test_a_lone_dot_is_text_and_a_file_with_one_names_itself(tmp_path):
    # YAML 1.2: a float has a digit.
    assert [parse_value(t) for t in (".", "-.", "1.", ".5")] == [".", "-.", 1.0, 0.5]
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  .: 0\n")
    with pytest.raises(ValueError, match=rf"{path}: model: unknown keys \['\.'\]"):
        load_config(path)
