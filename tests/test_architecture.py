"""The package's shape, checked on its source: no import cycles (function-local imports
count), only the command lines import the command-line module, every task is a package
of the same modules, no module over 400 lines, and the shared command lines name no
task's options."""

import ast
import os
import re
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, "biomodels")
CLI_MODULES = {"biomodels.cli", "biomodels.train", "biomodels.predict", "biomodels.evaluate", "biomodels.prepare",
               "biomodels.export.__main__", "biomodels.console"}
TASK_MODULES = {"__init__.py", "config.py", "data.py", "inference.py", "metrics.py", "serving.py", "outputs.py"}


def module_files():
    """{dotted module name: path} of every module under biomodels/."""
    modules = {}
    for folder, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = "biomodels." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def import_graph(modules):
    """{module: modules it imports anywhere in its source}, each import resolved to the
    most specific module of the package it names."""
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path).read())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def related(a, b):
    """A package and its own submodules: importing a submodule runs its package first."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def find_cycles(graph):
    """Import cycles of `graph` as lists of modules (a package and its own submodules
    are no cycle)."""
    edges = {module: {t for t in targets if not related(module, t)} for module, targets in graph.items()}
    cycles = []
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(import_graph(module_files()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_hidden_cycle_and_allows_packages(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from biomodels import b\n")  # function-local, still a cycle
    (tmp_path / "b.py").write_text("import biomodels.a\n")
    (tmp_path / "p.py").write_text("from biomodels.p import q\n")  # a package importing its submodule
    (tmp_path / "q.py").write_text("from biomodels.p import thing\n")
    modules = {name: str(tmp_path / f"{name.rpartition('.')[2]}.py")
               for name in ("biomodels.a", "biomodels.b", "biomodels.p", "biomodels.p.q")}
    graph = import_graph(modules)
    assert graph["biomodels.a"] == {"biomodels.b"} and graph["biomodels.b"] == {"biomodels.a"}
    assert find_cycles(graph) == [["biomodels.a", "biomodels.b", "biomodels.a"]]


def test_only_the_command_lines_import_the_cli_module():
    graph = import_graph(module_files())
    importers = sorted(module for module, targets in graph.items() if "biomodels.cli" in targets)
    assert set(importers) <= CLI_MODULES, importers


def test_tasks_are_packages_of_the_same_shape():
    from biomodels import tasks

    folder = os.path.join(ROOT, "tasks")
    for name in tasks.names():
        files = {f for f in os.listdir(os.path.join(folder, name)) if f.endswith(".py")}
        assert TASK_MODULES <= files, f"{name} lacks {sorted(TASK_MODULES - files)}"
    assert not [f for f in os.listdir(folder) if f.endswith(".py") and f not in ("__init__.py", "base.py")]


@pytest.mark.parametrize("limit", [400])
def test_no_module_is_over_the_line_limit(limit):
    long = {module: n for module, path in module_files().items() if (n := sum(1 for _ in open(path))) > limit}
    assert not long, long


def test_shared_command_lines_name_no_task_option():
    from biomodels import tasks

    options = {option.name for name in tasks.names() for option in
               (*tasks.get(name).predict_options, *tasks.get(name).evaluate_options)}
    for command in ("predict.py", "evaluate.py"):
        source = open(os.path.join(ROOT, command)).read()
        named = sorted(option for option in options if re.search(rf"[\"']{option}[\"']|--{option}\b", source))
        assert not named, f"{command} names task options {named}"


def functions_over(limit_lines, limit_positional):
    """(functions longer than `limit_lines`, functions taking more than
    `limit_positional` positional parameters besides self and cls) under biomodels/,
    as 'module:function (n)'."""
    long, wide = [], []
    for module, path in module_files().items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                positional = [a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if lines > limit_lines:
                    long.append(f"{module}:{node.name} ({lines})")
                if len(positional) > limit_positional:
                    wide.append(f"{module}:{node.name} ({len(positional)})")
    return long, wide


def test_functions_fit_on_a_screen_and_take_few_positional_parameters():
    long, wide = functions_over(60, 6)
    assert not long, f"functions over 60 lines: {long}"
    assert not wide, f"functions with more than 6 positional parameters (make the rest keyword-only): {wide}"


def test_the_size_check_counts_lines_and_positional_parameters(tmp_path, monkeypatch):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def long(a):\n{body}\n\ndef wide(self, a, b, c, d, e, f, g, *, h=1):\n    pass\n"
                                   "def fine(a, b, c, d, e, f, *, g=1, h=2):\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "module_files", lambda: {"biomodels.m": str(tmp_path / "m.py")})
    assert functions_over(60, 6) == (["biomodels.m:long (61)"], ["biomodels.m:wide (7)"])


def forwarding_methods(source):
    """The methods of the classes in `source` whose body (after a docstring) only passes
    their own parameters, in order, to a function of another module: `return
    module.name(a, b)` for `def name(self, a, b)`."""
    found = []
    for cls in (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)):
        for method in (node for node in cls.body if isinstance(node, ast.FunctionDef)):
            body = [statement for statement in method.body
                    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))]
            if len(body) != 1 or not isinstance(body[0], ast.Return) or not isinstance(body[0].value, ast.Call):
                continue
            call = body[0].value
            if not (isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
                    and call.func.value.id != "self"):
                continue
            parameters = [a.arg for a in method.args.args[1:]]
            passed = [a.id if isinstance(a, ast.Name) else None for a in call.args]
            passed += [k.value.id if isinstance(k.value, ast.Name) else None for k in call.keywords]
            if passed == parameters:
                found.append(f"{cls.name}.{method.name}")
    return found


def test_task_classes_declare_their_modules_rather_than_forward_to_them():
    from biomodels import tasks

    for name in tasks.names():
        source = open(os.path.join(ROOT, "tasks", name, "__init__.py")).read()
        assert not forwarding_methods(source), f"{name}: {forwarding_methods(source)}"


def test_the_forwarder_check_tells_a_forwarder_from_a_method_of_the_task():
    source = ("class T:\n"
              "    def a(self, x, y):\n        '''doc'''\n        return data.a(x, y)\n"
              "    def b(self, x):\n        return data.b(x, self.config)\n"
              "    def c(self, x):\n        return self.d(x)\n"
              "    def e(self, model, inputs, targets):\n        return outputs.e(model, inputs)\n")
    assert forwarding_methods(source) == ["T.a"]


def test_a_bound_task_reads_its_configuration_manifest_and_calibration():
    from biomodels import config as config_lib
    from biomodels.pipelines.manifest import Manifest
    from biomodels import tasks

    registered = tasks.get("cellular")
    assert registered.config == registered.presets()["quick"] and registered.manifest == Manifest("cellular")
    paper = config_lib.resolve(registered, "paper")
    bound = registered.bind(paper, manifest=Manifest("cellular", statistics={"mean_diameter": 17.0}),
                            calibration={"training_diameter": 17.0})
    assert bound.config is paper and bound.calibration == {"training_diameter": 17.0}
    assert bound.calibrate(None, None) == {"training_diameter": 17.0}  # read from the bound manifest
    assert registered.config == registered.presets()["quick"]  # the registry's task is unchanged
    assert bound.bind().config is paper and not bound.bind().manifest.statistics


def test_every_study_passes_the_conformance_harness():
    """Each registered task has a test class inheriting tests/conformance.py's
    StudyConformance, so a sixth study is checked as the five are."""
    from biomodels import tasks

    covered = set()
    folder = os.path.dirname(__file__)
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        for node in ast.walk(ast.parse(open(os.path.join(folder, name)).read())):
            if isinstance(node, ast.ClassDef) and any(getattr(base, "id", None) == "StudyConformance" for base in node.bases):
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == "task_name"
                            and isinstance(statement.value, ast.Constant)):
                        covered.add(statement.value.value)
    assert covered == set(tasks.names())
