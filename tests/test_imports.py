"""Imports sit at module level unless deferring them is worth it (docs/design.md, "Packages").

Reads every module of `diffmimic/` and `factory/` and works out, from the imports at their module
level, which heavy packages (JAX, Brax, Ray, matplotlib, ...) each one loads. An import inside a
function is deferred for a reason: either it loads a heavy package that its module does not load
already (light commands stay light), or it says why on its line, `# deferred: <reason>` (a cycle, an
optional dependency, something that must run first). A contiguous block of imports says it once, on
its first line.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffmimic", "factory")
# Each takes seconds to import on a small CPU (JAX 4.5 s, Ray 2.4 s, matplotlib 3.5 s) or is optional.
HEAVY = frozenset(
    {
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax",
        "brax",
        "mujoco",
        "ray",
        "matplotlib",
        "PIL",
        "torch",
        "smplx",
        "imageio_ffmpeg",
        "bvhio",
        "tensorstore",
    }
)
DEFERRED = "# deferred:"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    _module_name(p): p for package in PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))
}


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names: `from a import b` names `a.b` when that is a module of
    the project, else `a`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _loads(name: str) -> list[str]:
    """What importing `name` runs: each package on its path, then the module."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _is_type_checking(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _is_main_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def _module_level_imports(module: str) -> list[str]:
    """What `module` imports as it loads: outside functions, `if TYPE_CHECKING:` and its
    `if __name__ == "__main__":` command."""
    found = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.extend(_imported(module, node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_main_block(node):
                continue
            elif _is_type_checking(node):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, (ast.stmt, ast.excepthandler))])

    visit(ast.parse(MODULES[module].read_text()).body)
    return found


@functools.cache
def heavy_loads() -> dict[str, frozenset[str]]:
    """For each project module, the heavy packages that importing it loads (transitively)."""
    direct = {m: [n for name in _module_level_imports(m) for n in _loads(name)] for m in MODULES}
    # A module loads its own packages first.
    for module in MODULES:
        direct[module] += _loads(module)[:-1]
    loads = {m: frozenset(n.split(".")[0] for n in names if n.split(".")[0] in HEAVY) for m, names in direct.items()}
    changed = True
    while changed:  # to a fixed point: import cycles among light modules are fine
        changed = False
        for module, names in direct.items():
            grown = loads[module].union(*(loads[n] for n in names if n in MODULES))
            if grown != loads[module]:
                loads[module], changed = grown, True
    return loads


def loads_of(name: str) -> frozenset[str]:
    heavy = frozenset(n.split(".")[0] for n in _loads(name) if n.split(".")[0] in HEAVY)
    return heavy.union(*(heavy_loads()[n] for n in _loads(name) if n in MODULES))


def function_level_imports(module: str) -> list[tuple[ast.Import | ast.ImportFrom, ast.Import | ast.ImportFrom]]:
    """(import, first import of its contiguous block) for every import inside a function."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for field in ("body", "orelse", "finalbody", "handlers"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            first = None
            for child in body:
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    first = first or child
                    if in_function:
                        found.append((child, first))
                else:
                    first = None
                    visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(MODULES[module].read_text()), False)
    return found


def test_the_heavy_modules_are_found():
    loads = heavy_loads()
    assert "brax" in loads["diffmimic.train"]
    assert "ray" in loads["factory.distribution.coordinator"]
    assert "mujoco" in loads["diffmimic.atomic"]  # the package imports MuJoCo's MJX (and so JAX)
    for light in ("factory.library", "factory.library.cli", "factory.run", "factory.distribution.options"):
        assert not loads[light], (light, loads[light])


def test_function_level_imports_are_deferred_for_a_reason():
    loads = heavy_loads()
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, first in function_level_imports(module):
            new = frozenset().union(*(loads_of(name) for name in _imported(module, node))) - loads[module]
            if new or DEFERRED in lines[first.lineno - 1]:
                continue
            unexplained.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, (
        "imports inside functions that load nothing heavy the module does not load already: move them to "
        f"the module's top, or say why they wait with `{DEFERRED} <reason>`:\n" + "\n".join(unexplained)
    )


def test_light_commands_stay_light():
    heavy = ("jax", "ray", "brax", "matplotlib")
    code = "import sys, factory.library, factory.library.cli, factory.run\n"
    code += f"print([m for m in {heavy} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing the light commands loaded {done.stdout.strip()}"
