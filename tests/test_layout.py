"""The package's layering, as DESIGN.md sets it: imports run downwards, the command line is the only
place with argparse, and files are written by one helper."""

import ast
from pathlib import Path

import maskrcnn

ROOT = Path(maskrcnn.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def test_nothing_below_the_command_line_imports_it_or_argparse():
    for path in _modules():
        if "cli" in path.relative_to(ROOT).parts or path.name == "__main__.py":
            continue
        imported = _imports(path)
        assert not any(name == "maskrcnn.cli" or name.startswith("maskrcnn.cli.") for name in imported), path
        assert "argparse" not in imported, path


def test_lower_layers_do_not_import_upper_ones():
    upper = {
        "ops": (
            "maskrcnn.modeling",
            "maskrcnn.data",
            "maskrcnn.engine",
            "maskrcnn.weights",
            "maskrcnn.models",
        ),
        "modeling": ("maskrcnn.data", "maskrcnn.engine", "maskrcnn.models"),
        "data": ("maskrcnn.modeling", "maskrcnn.engine", "maskrcnn.weights", "maskrcnn.models"),
        # Export takes a built model (the command line loads the checkpoint): beside the engine.
        "export": ("maskrcnn.engine", "maskrcnn.data", "maskrcnn.weights"),
    }
    for package, forbidden in upper.items():
        for path in _modules(package):
            for name in _imports(path):
                assert not name.startswith(forbidden), f"{path} imports {name}"
    # The bottom layer: the containers, the file writer, the progress bars, and the config (which writes
    # through io).
    bottom = (
        ("structures.py", set()),
        ("io.py", set()),
        ("progress.py", set()),
        ("config.py", {"maskrcnn.io"}),
    )
    for module, allowed in bottom:
        imported = {name for name in _imports(ROOT / module) if name.startswith("maskrcnn")}
        assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_one_atomic_file_writer():
    users = [p for p in _modules() if "os.replace(" in p.read_text()]
    assert users == [ROOT / "io.py"]


def test_engine_and_command_line_modules_stay_small():
    for path in _modules("engine") + _modules("cli"):
        lines = path.read_text().count("\n")
        assert lines <= 450, f"{path}: {lines} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path}:{node.lineno} {node.name} has {length} lines"
