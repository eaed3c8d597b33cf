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
