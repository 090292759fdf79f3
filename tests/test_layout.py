"""The seams hold: imports go one way with no cycle, only cli/ prints or exits, one definition of the contract, small files.

Read from the source with `ast` (nothing is imported), so a change that breaks a rule of the
README's Layout section fails here, naming the file.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("costserve", "solver", "workers", "deploy", "catalog")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60
ERRORS = "costserve.errors"  # the one error root: every layer may raise its families, so it imports nothing of ours
UNITS = "costserve.durations"  # the one duration and money format: every layer's messages use it; it imports nothing
BUILTIN_EXCEPTIONS = {"BaseException", "Exception", "ValueError", "RuntimeError", "KeyError", "LookupError", "OSError",
                      "TypeError", "IOError", "EnvironmentError", "ArithmeticError", "AssertionError"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Project modules `path` imports (type-only imports included: they are a dependency of the reader too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        hit = next((n for n in names if n in MODULES), None)
        if hit is not None:
            found.add(hit)
    return found


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_imports_go_one_way() -> None:
    upward = []
    for source, targets in GRAPH.items():
        for target in targets:
            top, target_top = source.split(".")[0], target.split(".")[0]
            if top in ("solver", "workers", "deploy", "catalog") and target_top == "costserve" and target not in (ERRORS, UNITS):
                upward.append((source, target))
            if top in ("workers", "deploy") and target_top == "solver" and target != "solver.plan":
                upward.append((source, target))
            if top == "catalog" and target_top in ("solver", "workers", "deploy"):
                upward.append((source, target))
            if source.startswith("costserve.") and not source.startswith("costserve.cli") and target.startswith("costserve.cli"):
                upward.append((source, target))
    assert upward == []
    assert GRAPH[UNITS] == set(), "the one duration and money format imports nothing of the project"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt == node or nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_only_cli_prints_or_exits() -> None:
    offenders = []
    for name, path in MODULES.items():
        if not name.startswith("costserve.") or name.startswith("costserve.cli"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "typer" for a in node.names):
                offenders.append(f"{path}:{node.lineno}: imports typer")
            if isinstance(node, ast.ImportFrom) and (node.module == "typer" or (
                    node.module == "rich.console" and any(a.name == "Console" for a in node.names))):
                offenders.append(f"{path}:{node.lineno}: imports {node.module}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "fail", "exit"):
                offenders.append(f"{path}:{node.lineno}: calls {node.func.id}()")
    assert offenders == []


def test_the_contract_is_defined_once() -> None:
    contract = {"Job", "Plan", "Replica", "Stage", "HostLayer"}
    defined = defaultdict(list)
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in contract:
                defined[node.name].append(name)
    assert {k: v for k, v in defined.items() if v != ["solver.plan"]} == {}
    assert set(defined) == contract


def test_files_and_functions_stay_small() -> None:
    too_big = []
    for path in MODULES.values():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert too_big == []


def _exception_classes() -> dict[str, tuple[str, list[str]]]:
    """Every class of the five packages that derives from an exception: name -> (module, its base names)."""
    classes: dict[str, tuple[str, list[str]]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]
                classes[node.name] = (name, bases)

    def is_exception(cls: str, seen: frozenset[str] = frozenset()) -> bool:
        return cls in BUILTIN_EXCEPTIONS or (cls in classes and cls not in seen and any(
            is_exception(b, seen | {cls}) for b in classes[cls][1]))

    return {cls: v for cls, v in classes.items() if is_exception(cls)}


def test_every_exception_descends_from_the_one_root() -> None:
    classes = _exception_classes()

    def has_root(cls: str) -> bool:
        return cls == "CostserveError" or any(has_root(b) for b in classes.get(cls, ("", []))[1])

    assert classes["CostserveError"][0] == ERRORS
    assert sorted(f"{module}.{cls}" for cls, (module, _) in classes.items() if not has_root(cls)) == []
    assert GRAPH[ERRORS] == set(), "the error root imports nothing of the project"


def _calls(path: Path) -> set[str]:
    """Names of the functions `path` calls (`f(...)` and `x.f(...)` alike)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            found.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "")
    return found


SUBMIT_STEPS = {"create_run", "write_shards", "prepare_shards"}  # a run is created and sharded by a submit and nothing else
RUN_STEPS = SUBMIT_STEPS | {"scan_jobs", "shard_jobs", "execute_local", "launch_sky", "operate_fleet", "dryrun_run", "drive"}


def test_only_run_submit_orchestrates_a_submit_and_cli_orchestrates_nothing() -> None:
    calls = {name: _calls(path) for name, path in MODULES.items()}
    # run/prepare.py defines the steps and composes its own (prepare_shards: pass 2, then the `prepared` event; a resume
    # completes a preparation cut short only through it, from the run's own request and plan)
    creators = sorted(name for name, called in calls.items() if called & SUBMIT_STEPS and name != "costserve.run.prepare")
    assert creators == ["costserve.run.submit"]
    in_cli = sorted(f"{name}: {sorted(called & RUN_STEPS)}" for name, called in calls.items()
                    if name.startswith("costserve.cli") and called & RUN_STEPS)
    assert in_cli == []


def test_nothing_builds_a_costserve_command_line_from_a_request() -> None:
    """A submit reaches a process of its own as a typed request (run/spawn.py), never as `costserve submit ARGS`."""
    built = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "submit_args":
                built.append(f"{name}:{node.lineno} defines submit_args")
            if isinstance(node, (ast.List, ast.Tuple)):
                words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if "submit" in words and any(w in ("costserve", "costserve.cli") for w in words):
                    built.append(f"{name}:{node.lineno} builds a `costserve submit` command line")
    assert built == []
