"""The package's import rules (issue 13), checked on the source with ``ast`` (nothing is imported):

* ``catscanner.runtime`` (what scanning needs) never imports another package of catscanner, nor
  PyTorch, scikit-learn, SciPy or matplotlib, nor what the front ends use (FastAPI, pydantic, typer,
  rich, Ray, ...);
* ``training`` never imports ``web``, ``cli``, ``bench`` or ``batch``; ``web`` never imports
  ``training``, ``cli``, ``bench`` or ``batch``; ``batch`` (scanning archives) uses ``runtime``
  only; ``bench`` (measuring speed) may use ``training`` (data readers, the reference model) but not
  ``web``, ``cli`` or ``batch``;
* ``errors`` and ``progress`` are leaves (they import nothing from the package);
* every import of a ``catscanner`` module names a module that exists;
* the modules' import graph has no cycle.

Function-level imports count as much as top-level ones. ``test_checker_catches_...`` proves the
checker itself can fail. The last test runs a scan (and builds the web app and CLI) in a fresh
interpreter where PyTorch, scikit-learn, SciPy and matplotlib cannot be imported at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "catscanner"

HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "onnx", "onnxscript")
# what the front ends use; scanning itself needs none of them
FRONT_ENDS = ("fastapi", "starlette", "pydantic", "uvicorn", "typer", "rich", "ray", "pyarrow")
# (importing package, forbidden prefixes)
RULES: dict[str, tuple[str, ...]] = {
    "catscanner.runtime": ("catscanner.training", "catscanner.web", "catscanner.cli", "catscanner.bench",
                           "catscanner.batch", "catscanner.progress", *HEAVY, *FRONT_ENDS),
    "catscanner.training": ("catscanner.web", "catscanner.cli", "catscanner.bench", "catscanner.batch"),
    "catscanner.web": ("catscanner.training", "catscanner.cli", "catscanner.bench", "catscanner.batch", *HEAVY),
    "catscanner.batch": ("catscanner.training", "catscanner.web", "catscanner.cli", "catscanner.bench", *HEAVY),
    "catscanner.bench": ("catscanner.web", "catscanner.cli", "catscanner.batch"),
    "catscanner.errors": ("catscanner",),  # leaves: nothing from the package
    "catscanner.progress": ("catscanner",),
}


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, e.g. catscanner.runtime.scanner
    target: str  # the module imported, absolute, e.g. catscanner.errors or torch.nn
    line: int


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]  # a module's own package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import in a module, at any depth (functions and classes included).

    ``from X import y`` counts as importing ``X.y`` when that is a module of the package, else ``X``.
    """
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(name, sub if sub in modules else base, node.lineno)


def all_imports(root: Path = SRC, package: str = PACKAGE) -> tuple[dict[str, Path], list[Import]]:
    modules = module_files(root, package)
    return modules, [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def _within(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def rule_violations(imports: list[Import], rules: dict[str, tuple[str, ...]] = RULES) -> list[str]:
    bad = set()
    for imp in imports:
        for layer, forbidden in rules.items():
            if not _within(imp.importer, layer):
                continue
            for prefix in forbidden:
                if _within(imp.target, prefix):
                    bad.add(f"{imp.importer} (line {imp.line}) imports {imp.target}")
    return sorted(bad)


def unknown_modules(imports: list[Import], modules: dict[str, Path], package: str = PACKAGE) -> list[str]:
    return sorted({f"{imp.importer} (line {imp.line}) imports {imp.target}, which does not exist"
                   for imp in imports if _within(imp.target, package) and imp.target not in modules})


def find_cycle(imports: list[Import], modules: dict[str, Path]) -> list[str] | None:
    """One import cycle among the package's modules (as a path a -> ... -> a), or None."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


# --------------------------------------------------------------------------- the rules on the real source


@pytest.fixture(scope="module")
def source() -> tuple[dict[str, Path], list[Import]]:
    modules, imports = all_imports()
    # the layers the rules are about really exist (a rename must not make the rules vacuous)
    for layer in ("catscanner.runtime.scanner", "catscanner.runtime.decoding", "catscanner.training.train",
                  "catscanner.web.app", "catscanner.cli.scan", "catscanner.errors", "catscanner.progress"):
        assert layer in modules, f"{layer} not found under {SRC}"
    return modules, imports


def test_layers_import_only_downward(source) -> None:
    _, imports = source
    assert rule_violations(imports) == []


def test_every_package_import_names_an_existing_module(source) -> None:
    modules, imports = source
    assert unknown_modules(imports, modules) == []


def test_no_import_cycles(source) -> None:
    modules, imports = source
    assert find_cycle(imports, modules) is None


def test_function_level_imports_are_seen(source) -> None:
    """The checker sees the lazy imports the CLI relies on (so a lazy import cannot hide a violation)."""
    _, imports = source
    edges = {(i.importer, i.target) for i in imports}
    assert ("catscanner.cli.scan", "catscanner.runtime.scanner") in edges  # inside scan()
    assert ("catscanner.cli.develop", "catscanner.training.train") in edges  # inside _train()
    assert ("catscanner.cli", "catscanner.cli.scan") in edges  # from . import develop, scan


# --------------------------------------------------------------------------- the checker can fail


def test_checker_catches_violations_cycles_and_missing_modules(tmp_path: Path) -> None:
    files = {
        "catscanner/__init__.py": "",
        "catscanner/errors.py": "",
        "catscanner/runtime/__init__.py": "",
        "catscanner/runtime/a.py": "from ..errors import X\nfrom . import b\n",
        "catscanner/runtime/b.py": "def f():\n    from .c import g\n    import torch.nn\n",
        "catscanner/runtime/c.py": "from catscanner.runtime import a\nfrom ..training.train import T\n",
        "catscanner/training/__init__.py": "",
        "catscanner/training/train.py": "from ..web.app import create_app\n",
        "catscanner/web/__init__.py": "",
        "catscanner/web/app.py": "from ..backbones import B\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules, imports = all_imports(tmp_path)
    assert rule_violations(imports) == [
        "catscanner.runtime.b (line 3) imports torch.nn",
        "catscanner.runtime.c (line 2) imports catscanner.training.train",
        "catscanner.training.train (line 1) imports catscanner.web.app",
    ]
    assert unknown_modules(imports, modules) == [
        "catscanner.web.app (line 1) imports catscanner.backbones, which does not exist"]
    assert find_cycle(imports, modules) == [
        "catscanner.runtime.a", "catscanner.runtime.b", "catscanner.runtime.c", "catscanner.runtime.a"]


# --------------------------------------------------------------------------- at run time


def test_scanning_and_serving_run_without_torch_sklearn_scipy_matplotlib(cat_photo: Path) -> None:
    """A fresh interpreter in which the training libraries cannot be imported at all: scanning a
    photo, building the web app and the CLI still work (the plain ``pip install .`` case)."""
    code = f"""
import sys
BLOCKED = {HEAVY!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(name + ' is blocked for this test')
sys.meta_path.insert(0, Block())
from catscanner import Scanner
from catscanner.web import create_app
from catscanner.cli import app
create_app()
r = Scanner(threads=1).scan({str(cat_photo)!r})
loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
assert not loaded, loaded
print(r.is_cat, r.top_breed.breed if r.top_breed else None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "Bengal"]


def test_scanning_from_python_needs_no_front_end_package(cat_photo: Path) -> None:
    """``from catscanner import Scanner`` and a scan, in an interpreter where FastAPI, pydantic, typer,
    rich, Ray, ... (and the training libraries) cannot be imported: the runtime is NumPy, Pillow and
    the inference runtime only."""
    code = f"""
import sys
BLOCKED = {HEAVY + FRONT_ENDS!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(name + ' is blocked for this test')
sys.meta_path.insert(0, Block())
from catscanner import Scanner
r = Scanner(threads=1).scan({str(cat_photo)!r})
print(r.is_cat, r.top_breed.breed if r.top_breed else None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "Bengal"]
