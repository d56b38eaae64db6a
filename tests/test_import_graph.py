"""The package's architecture as a test: no import cycle (function-level imports included), and
evaluation reads checkpoints without importing the training loop."""

from __future__ import annotations

import ast
import pathlib

import lamae_jax

ROOT = pathlib.Path(lamae_jax.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
    """lamae_jax modules `name` imports anywhere in its body; `from P import m` counts as P.m
    when m is a module (importing a submodule is not an import of its package's __init__ cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_lamae_jax():
    graph = import_graph()
    assert "lamae_jax.train.loop" in graph["lamae_jax.train.__main__"]  # function-level import seen
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_eval_imports_only_checkpoints_and_state_from_train():
    graph = import_graph()
    allowed = {"lamae_jax.train", "lamae_jax.train.checkpoints", "lamae_jax.train.state"}
    for name, deps in graph.items():
        if name.startswith("lamae_jax.eval"):
            bad = {d for d in deps if d.startswith("lamae_jax.train")} - allowed
            assert not bad, f"{name} imports {bad}"
    assert graph["lamae_jax.train.checkpoints"] & {d for d in graph if d.startswith("lamae_jax.train")} \
        == {"lamae_jax.train.state"}


def test_evaluation_primitives_do_not_import_the_studies():
    """eval/ is the layer below the studies (compare, transfer, scaling, lead reconstruction)."""
    graph = import_graph()
    assert any(n.startswith("lamae_jax.studies.") for n in graph)
    for name, deps in graph.items():
        if name.startswith(("lamae_jax.eval", "lamae_jax.train", "lamae_jax.models", "lamae_jax.data")):
            bad = {d for d in deps if d.startswith("lamae_jax.studies")}
            assert not bad, f"{name} imports {bad}"
