import json

import pytest

from maskrcnn.config import ModelConfig, config_from_dict, config_to_dict, override


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
