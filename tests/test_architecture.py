"""Static checks on the package: who may import what, and feedparser only ever gets bytes
(RELIABILITY.md S4). These guard the design for whoever changes the code next.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "aggregator"


def _modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text(encoding="utf-8"))
        for path in PACKAGE.rglob("*.py")
    }


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = [
        name
        for name, tree in _modules().items()
        if not name.startswith("aggregator/store/")
        and any(module.split(".")[0] in ("sqlalchemy", "alembic") for module in _imports(tree))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "forbidden",
    ["aggregator.fetch", "aggregator.parse", "aggregator.scheduler", "aggregator.update"],
)
def test_web_never_fetches_or_schedules(forbidden: str) -> None:
    for name, tree in _modules().items():
        if name.startswith("aggregator/web/") or name == "aggregator/render.py":
            assert not any(
                m == forbidden or m.startswith(forbidden + ".") for m in _imports(tree)
            ), name


def test_stages_do_not_import_entry_points() -> None:
    entry_points = {"aggregator.cli", "aggregator.web", "aggregator.scheduler"}
    for name, tree in _modules().items():
        if name in (
            "aggregator/cli.py",
            "aggregator/scheduler.py",
            "aggregator/__main__.py",
        ) or name.startswith("aggregator/web/"):
            continue
        assert not (_imports(tree) & entry_points), name


STAGES = [
    {"exceptions", "wording", "dates", "schedule", "langid", "embed"},  # helpers, no imports
    {"models", "netpolicy"},
    {"config", "normalise"},
    {"fetch", "jsonfeed", "fastparse", "identity", "sources"},
    {"parse", "store", "render", "group"},
    {"parsepool", "discover", "grouper"},
    {"update"},
    {"scheduler", "web"},
    {"cli"},
    {"__main__"},
]
"""The package's modules in the order of the data flow (config -> fetch -> parse and
normalise -> store -> group -> render and serve), each stage above what it builds on."""


def _stage(module: str) -> int | None:
    """The stage of `aggregator.x[.y]` (None for the package itself or a non-module)."""
    parts = module.split(".")
    if parts[0] != "aggregator" or len(parts) < 2:
        return None
    return next((n for n, names in enumerate(STAGES) if parts[1] in names), None)


def test_imports_point_one_way() -> None:
    """A module imports only modules of earlier stages (or its own package's)."""
    backwards = []
    for name, tree in _modules().items():
        module = name.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        own = _stage(module)
        if module == "aggregator":
            continue
        assert own is not None, f"{name}: add it to STAGES"
        for imported in _imports(tree):
            stage = _stage(imported)
            same_package = imported.split(".")[:2] == module.split(".")[:2]
            if stage is not None and not same_package and stage >= own:
                backwards.append(f"{module} imports {imported}")
    assert backwards == []


def test_feedparser_is_only_handed_bytes() -> None:
    """S4: every feedparser.parse call passes a parameter annotated `bytes`."""
    calls = []
    for name, tree in _modules().items():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            annotations = {
                a.arg: ast.unparse(a.annotation)
                for a in function.args.args + function.args.kwonlyargs
                if a.annotation
            }
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "feedparser.parse":
                    argument = node.args[0]
                    assert isinstance(argument, ast.Name), (
                        f"{name}: feedparser.parse({ast.unparse(argument)})"
                    )
                    assert annotations.get(argument.id) == "bytes", (
                        f"{name}: {argument.id} is not bytes"
                    )
                    calls.append(name)
    assert calls, "feedparser.parse is called somewhere"


def test_no_pickle_or_eval_of_feed_data() -> None:
    """Nothing from a feed is executed or unpickled (S10)."""
    for name, tree in _modules().items():
        imported = _imports(tree)
        assert not {"pickle", "marshal", "shelve"} & {m.split(".")[0] for m in imported}, name
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), name


def test_a_local_path_is_never_accepted_as_a_feed_url(tmp_path: Path) -> None:
    from aggregator.config import check_url
    from aggregator.exceptions import BlockedAddressError, FetchError
    from aggregator.netpolicy import AddressPolicy

    for value in ("/etc/passwd", "file:///etc/passwd", "etc/passwd", "gopher://x/"):
        with pytest.raises(ValueError):
            check_url(value)
        with pytest.raises((BlockedAddressError, FetchError)):
            AddressPolicy().check_url(value)
