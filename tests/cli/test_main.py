"""The command line's entry: help, version, info, and how problems reach the user (one line, no traceback)."""

import subprocess
import sys

import pytest
import torch

import maskrcnn
from maskrcnn.cli import build_parser, main
from maskrcnn.cli.common import reader_options, split_assignments


def test_version_and_help(capsys):
    assert main([]) == 0
    assert "info" in capsys.readouterr().out
    result = subprocess.run(
        [sys.executable, "-m", "maskrcnn", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"maskrcnn {maskrcnn.__version__}"


def test_info_reports_torch(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert ("cuda         available" in out) == torch.cuda.is_available()


def test_every_command_is_declared_once_with_a_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == [
        "analyze", "check-data", "convert", "convert-weights", "demo", "evaluate", "export", "info",
        "inspect", "predict", "report", "splash", "train", "weights",
    ]  # fmt: skip
    for name, command in sub.choices.items():
        if name not in ("inspect", "weights"):  # families of their own: their actions have the handlers
            assert command.get_default("func").__name__ == "run_" + name.replace("-", "_"), name


def test_assignments_keep_the_text_and_reader_options_are_typed():
    assert split_assignments(["train.amp=off", "a.b=[1, 2]", "empty="], "--set") == {
        "train.amp": "off",
        "a.b": "[1, 2]",
        "empty": "",
    }
    assert reader_options(["count=20", "image_dir=imgs", "class_names=[a, b]"]) == {
        "count": 20,
        "image_dir": "imgs",
        "class_names": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--out", "x", "--set", "train.lr"], "error: --set expects KEY=VALUE, got 'train.lr'"),
        (["train", "--out", "x", "--preset", "shapes", "--config", "c.yaml"], "error: train: give --preset"),
        (["train", "--out", "x", "--set", "train.nothing=1"], "error: override 'train.nothing': no such key"),
        (["check-data", "--format", "coco", "missing.json"], "error: "),
        (["check-data", "--format", "shapes", "-o", "colour=red"], "error: --format shapes: "),
        (["convert", "--from", "shapes", "--to", "voc", "out.xml"], "error: convert --to voc: choose"),
    ],
)
def test_problems_are_one_line_with_exit_code_1(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_a_bug_is_one_line_too_and_the_traceback_comes_on_request(monkeypatch, capsys):
    from maskrcnn.cli import info

    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr(info, "run_info", broken)  # the handler the parser is built with
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (KeyError: 'oops'); set MASKRCNN_TRACEBACK=1")
    assert "Traceback" not in err
    monkeypatch.setenv("MASKRCNN_TRACEBACK", "1")
    assert main(["info"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_running_out_of_memory_is_said_as_such_with_what_needs_less(monkeypatch, capsys):
    import torch

    from maskrcnn.cli import info

    def greedy(args):
        torch.empty(2**62, dtype=torch.uint8)  # what torch's CPU allocator refuses, at once

    monkeypatch.setattr(info, "run_info", greedy)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (")
    assert "can't allocate memory" in err
    assert "--batch-size" in err
    assert "model.transform.max_size" in err
    assert "internal error" not in err
    assert "Traceback" not in err
    assert err.count("\n") == 1

    def python_greedy(args):
        raise MemoryError

    monkeypatch.setattr(info, "run_info", python_greedy)
    assert main(["info"]) == 1
    assert capsys.readouterr().err.startswith("error: out of memory (MemoryError): smaller images")


def _commands(parser):
    """Every (sub)command parser with its name path, nested ones included (``weights list``)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield [name], command
                for more, nested in _commands(command):
                    yield [name, *more], nested


def test_quiet_is_taken_before_and_after_every_command(capsys):
    from maskrcnn import progress

    parser = build_parser()
    assert parser.parse_args(["info"]).quiet is False
    names = [path for path, _ in _commands(parser)]
    assert ["train"] in names
    assert ["weights", "list"] in names
    for path, command in _commands(parser):
        assert any(a.option_strings == ["-q", "--quiet"] for a in command._actions), path
    predict = ["predict", "x.png", "--weights", "w", "--out", "o"]
    for argv in (
        ["-q", *predict],
        [*predict, "-q"],
        ["--quiet", "weights", "list"],
        ["weights", "list", "-q"],
    ):
        assert parser.parse_args(argv).quiet is True, argv
    assert parser.parse_args(predict).quiet is False
    try:
        assert main(["-q", "info"]) == 0
        assert progress.is_quiet()
        assert "torch" in capsys.readouterr().out  # the command's result stays
        assert main(["info"]) == 0
        assert not progress.is_quiet()  # one command's -q does not reach the next
    finally:
        progress.set_quiet(False)
