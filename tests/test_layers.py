"""No import runs up a layer (docs/design.md, "Packages").

Reads every import statement of every module in `diffmimic/` and `factory/` (inside functions
too) and checks it against the layers below, lowest first. A module may import its own layer or
any layer below it; the commands on top may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffmimic", "factory")

# Lowest first. A module belongs to the first layer with a prefix that matches it (longest prefix).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("diffmimic.atomic", "diffmimic.geometry")),
    ("character", ("diffmimic.character",)),
    ("mocap", ("diffmimic.mocap", "diffmimic.plausibility")),
    ("method", ("diffmimic",)),
    ("library", ("factory.library",)),
    ("distribution and composition", ("factory.distribution", "factory.compose")),
    ("presentation", ("factory.presentation",)),
    ("commands", ("factory.run", "factory.library.cli", "diffmimic.train_cli", "factory")),
]
# Entry points: a command serves the layer it names, from above it.
COMMANDS = ("factory.run", "factory.library.cli", "diffmimic.train_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_command(module: str) -> bool:
    return module in COMMANDS or module.endswith(".__main__")


def layer_of(module: str) -> int:
    if module in PACKAGES:  # a package's __init__ runs before any of its modules; it imports none of ours
        return 0
    if _is_command(module):
        return len(LAYERS) - 1
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise ValueError(f"{module} is in no layer")
    return best


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_main_block(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
    )


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a project module in `path`; `from a import b`
    counts as importing `a.b` when `b` is a module of the project, else `a`."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    # A module's `if __name__ == "__main__":` block is its command: it belongs to the top layer.
    tree.body = [node for node in tree.body if not _is_main_block(node)]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            names = []
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                as_path = REPO_ROOT.joinpath(*candidate.split("."))
                is_module = as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file()
                names.append(candidate if is_module else base)
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in PACKAGES]
    return found


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))


def test_every_module_has_a_layer():
    for path in _modules():
        layer_of(_module_name(path))


def test_no_import_runs_up_a_layer():
    upward = []
    for path in _modules():
        module = _module_name(path)
        own = layer_of(module)
        for line, imported in project_imports(path):
            if layer_of(imported) > own:
                upward.append(
                    f"{path.relative_to(REPO_ROOT)}:{line}: {module} ({LAYERS[own][0]}) imports "
                    f"{imported} ({LAYERS[layer_of(imported)][0]})"
                )
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_diffmimic_never_imports_ray_or_factory():
    offenders = []
    for path in sorted((REPO_ROOT / "diffmimic").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(REPO_ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("ray", "factory")
            ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("diffmimic.env", "diffmimic.character.mjcf", True),
        ("diffmimic.character.mjcf", "diffmimic.env", False),
        ("diffmimic.mocap.retarget", "diffmimic.atomic", True),
        ("diffmimic.mocap.retarget", "diffmimic.train", False),
        ("factory.library.store", "factory.presentation.render", False),
        ("factory.library.cli", "factory.presentation.render", True),
        ("diffmimic.character.__main__", "diffmimic.env", True),
        ("factory.distribution.coordinator", "factory.library", True),
    ],
)
def test_the_rule_itself(importer, imported, allowed):
    assert (layer_of(imported) <= layer_of(importer)) is allowed
