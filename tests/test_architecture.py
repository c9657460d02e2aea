"""The code's shape: no import cycles, the layering contract holds, the wheel installs the zoo as edgec.zoo.

`make test` also runs `ruff check` and `lint-imports` (pyproject.toml holds both configurations); these
tests make the same checks fail inside pytest, naming what is wrong.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "models":  # the zoo's folder is the package edgec.zoo (edgec/zoo links to it)
        parts = ["edgec", "zoo", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: edgec modules it imports}, from every import statement, at module level or in a function."""
    files = [p for p in sorted([*REPO.joinpath("edgec").rglob("*.py"), *REPO.joinpath("models").rglob("*.py")])
             if "zoo" not in p.relative_to(REPO).parts]  # edgec/zoo/* are models/* seen through the link
    modules = {_module_name(p): p for p in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:  # X.name, else X itself
                imported |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in map(resolve, imported) if m and m != name and m.startswith("edgec")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert len(graph) > 100 and "edgec.zoo.train" in graph and "edgec.backends.tvm.backend" in graph
    assert cycles(graph) == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layering_contract_holds():
    proc = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    return zipfile.ZipFile(next(out.glob("edgec-*.whl")))


def test_wheel_installs_the_zoo_as_edgec_zoo_not_as_models(wheel):
    names = wheel.namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"edgec"}, top_level
    assert {"edgec/zoo/registry.py", "edgec/zoo/train.py", "edgec/zoo/weights/lenet.pt",
            "edgec/zoo/weights/lenet.json"} <= set(names)
    assert wheel.getinfo("edgec/zoo/weights/lenet.pt").file_size > 0  # the file, not a link to it
