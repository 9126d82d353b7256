"""The package's shape, checked: the library never imports the command line, module names are
unique and say what they hold, serving functions stay short, records are built with keywords,
and the batcher runs without the web framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO
from transformer_mt.inference.search import SearchOptions

PACKAGE = REPO / "src" / "transformer_mt"
COMMANDS = "transformer_mt.commands"
# Modules named after a framework say where they come from, not what they hold (`lit.py`).
FRAMEWORK_NAMES = {"lit", "lightning", "pl", "torch", "fastapi", "starlette", "uvicorn", "hf"}
WEB_MODULES = ("fastapi", "starlette", "uvicorn", "pydantic")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an `import` or `from ... import` names anywhere in `source` (function
    bodies included), relative imports resolved against `module`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level
                                             + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def library_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "commands" not in p.relative_to(PACKAGE).parts]


def test_the_import_check_sees_every_kind_of_import() -> None:
    """The check below would catch an import of the commands however it is spelled."""
    source = ("import os\n"
              "def f():\n    from transformer_mt.commands.options import cli_name\n"
              "from ..commands import main\n")
    found = imported_modules(source, "transformer_mt.serving.app")
    assert "transformer_mt.commands.options" in found
    assert "transformer_mt.commands" in found  # the relative import, resolved


def test_the_library_never_imports_the_commands() -> None:
    offenders = []
    for path in library_modules():
        names = imported_modules(path.read_text(encoding="utf-8"), module_name(path),
                                 path.name == "__init__.py")
        offenders += [f"{path.relative_to(REPO)}: {name}" for name in sorted(names)
                      if name == COMMANDS or name.startswith(COMMANDS + ".")]
    assert offenders == []
    assert len(library_modules()) > 30  # the walk found the library


def test_no_two_modules_share_a_file_name() -> None:
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_no_module_is_named_after_a_framework() -> None:
    stems = {p.stem for p in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                        if p.is_dir()}
    assert stems & FRAMEWORK_NAMES == set()


def test_the_top_level_shows_the_architecture() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {"model", "data", "training", "inference", "scoring", "serving", "exporters",
            "commands"} <= packages
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__.py", "checkpoint.py", "config.py", "errors.py", "textio.py"}


def test_serving_functions_stay_short() -> None:
    """About 60 lines at most: a route table, not a function of nested closures."""
    long = []
    for path in (PACKAGE / "serving").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []


def dataclass_decorators(tree: ast.AST):
    """(class name, field count, decorator) of every @dataclass in a module."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        fields = sum(isinstance(item, ast.AnnAssign) for item in node.body)
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(target, ast.Name) and target.id == "dataclass":
                yield node.name, fields, decorator


def test_every_record_of_several_fields_is_keyword_only() -> None:
    positional = []
    for path in PACKAGE.rglob("*.py"):
        for name, fields, decorator in dataclass_decorators(ast.parse(path.read_text("utf-8"))):
            keywords = {k.arg: k.value for k in getattr(decorator, "keywords", [])}
            kw_only = keywords.get("kw_only")
            if fields > 1 and not (isinstance(kw_only, ast.Constant) and kw_only.value):
                positional.append(f"{path.name}:{name}")
    assert positional == []


def test_search_options_refuse_positional_fields() -> None:
    """A reordering of fields can no longer swap max_len_a and max_len_b silently."""
    with pytest.raises(TypeError):
        SearchOptions(4, 0.6, 1.0, 50)  # type: ignore[misc]
    assert SearchOptions(max_len_a=2.0, max_len_b=10).max_len_b == 10


def test_the_batcher_runs_without_the_web_framework() -> None:
    """With FastAPI, Starlette, uvicorn and pydantic made unimportable, the batcher, the
    service behind the routes and their tests still run."""
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({WEB_MODULES!r}))\n"
        "import transformer_mt.serving.service\n"
        "from tests import test_batcher as t\n"
        "tests = [getattr(t, n) for n in dir(t) if n.startswith('test_')]\n"
        "for test in tests: test()\n"
        "print(len(tests), 'ran;', 'fastapi' in sys.modules and sys.modules['fastapi'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "ran;", "None"]
