"""The package's shape: the request path imports no tooling, no import cycle, Flask's
public API only (private details only in ``_compat``), nothing outside the repository."""

from __future__ import annotations

import ast
import subprocess
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from helpers import PYTHON, ROOT
from meshmetrics.config import InstrumentOptions, MeshConfig

PACKAGE = ROOT / "src" / "meshmetrics"
THIS = Path(__file__).resolve()
TOOLING = (
    "meshmetrics.manifests",
    "meshmetrics.cli",
    "meshmetrics.diagnose",
    "meshmetrics.testing",
)
OPTIONAL = ("yaml", "grafana_foundation_sdk", "jsonschema", "rich", "jaeger_client", "thrift")


def test_import_meshmetrics_loads_the_request_path_only() -> None:
    code = "import sys; from meshmetrics import instrument; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in loaded if m.startswith(TOOLING)] == []
    assert [m for m in loaded if m.split(".")[0] in OPTIONAL] == []
    assert "meshmetrics.instrumentation" in loaded


def test_gunicorn_config_module_loads_no_flask_nor_http_clients() -> None:
    """Issue 25 item 3: gunicorn loads the config module into the master, and every worker
    inherits its imports; gevent warns when a module already holds ``ssl.SSLContext``
    (urllib3, requests) and eventlet cannot green the locks Flask's stack made.  (``ssl``
    itself is loaded by gunicorn's own config module, so its presence says nothing.)"""
    code = (
        "import sys, ssl, meshmetrics.gunicorn\n"
        "held = [n for n, m in list(sys.modules.items()) if n != 'ssl' and m is not None\n"
        "        and any(v is ssl.SSLContext for v in vars(m).values())]\n"
        "print(' '.join(sorted(sys.modules)), '|', ' '.join(held))"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, held = (part.split() for part in out.split("|"))
    heavy = (
        "flask",
        "werkzeug",
        "requests",
        "urllib3",
        "prometheus_flask_exporter",
        "opentelemetry",
    )
    assert [m for m in loaded if m.split(".")[0] in heavy] == []
    assert [m for m in loaded if m.startswith("meshmetrics.")] == [
        "meshmetrics._compat",
        "meshmetrics.gunicorn",
        "meshmetrics.multiproc",
        "meshmetrics.multiproc_merge",
    ]
    assert held == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package imported at module level (not inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                break
            if isinstance(sub, ast.ImportFrom) and sub.level:
                base = package.split(".")
                base = base[: len(base) - sub.level + 1]
                if sub.module:
                    found.add(".".join([*base, *sub.module.split(".")]))
                else:  # from . import runner
                    found.update(".".join([*base, alias.name]) for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("meshmetrics"):
                found.add(sub.module or "")
    return found


def test_no_import_cycle() -> None:
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    graph = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*stack, target])}"
            if target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_core_modules_never_import_tooling() -> None:
    core = [p for p in PACKAGE.glob("*.py") if p.name != "__main__.py"]
    core += (PACKAGE / "tracing").glob("*.py")
    for path in core:
        tooling = [t for t in _imports(path) if t.startswith(TOOLING)]
        assert tooling == [], f"{path.name} imports {tooling}"


def test_flask_and_prometheus_client_internals_only_in_compat() -> None:
    forbidden = (
        "import gc",
        "before_request_funcs",
        "after_request_funcs",
        "teardown_request_funcs",
        "deferred_functions",
        "view_functions[",
        "_got_registered_once",
        "_collector_to_names",
        "ValueClass",
        "_cv_request",
        "prom_do_not_track",
        # prometheus_client's value objects and value files (meshmetrics.cells)
        "._buckets",
        "._upper_bounds",
        "._positions",
        "_pack_two_doubles",
        "._file",
    )
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        text = path.read_text()
        assert [f for f in forbidden if f in text] == [], path


def test_nothing_refers_outside_the_repository() -> None:
    for folder in ("src", "tests", "examples", "docs", "benchmarks", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".sh", "") and path != THIS:
                assert "../shared" not in path.read_text(errors="replace"), path
                assert '"shared" / "tools"' not in path.read_text(errors="replace"), path


def test_typed_options_match_the_config_fields() -> None:
    assert set(typing.get_type_hints(InstrumentOptions)) == {f.name for f in fields(MeshConfig)}


def test_commands_and_their_engines_are_layered() -> None:
    """``cli/`` parses arguments and prints; ``diagnose/`` knows what check and top find,
    ``manifests/`` builds and writes the objects.  The engines never import the command
    line, and no engine shares a command's file name."""
    commands = {p.stem for p in (PACKAGE / "cli").glob("*.py")} - {"__init__"}
    for engine in ("diagnose", "manifests"):
        engines = {p.stem for p in (PACKAGE / engine).glob("*.py")} - {"__init__"}
        assert commands & engines == set(), engine
        for path in (PACKAGE / engine).glob("*.py"):
            upward = [t for t in _all_imports(path) if t.startswith("meshmetrics.cli")]
            assert upward == [], f"{engine}/{path.name} imports {upward}"
    for path in (PACKAGE / "diagnose").glob("*.py"):
        upward = [t for t in _imports(path) if t.startswith("meshmetrics.manifests")]
        assert upward == [], f"{path.name} imports {upward}"
    assert not (PACKAGE / "tools").exists()


def _all_imports(path: Path) -> set[str]:
    """Modules of the package imported anywhere in ``path`` (in functions too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            found.add(".".join([*base, *(node.module or "").split(".")]).rstrip("."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meshmetrics"):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("meshmetrics"))
    return found


#: Modules that import nothing of meshmetrics, so that every layer may import them: the
#: shared names, the conflict error, the types of hooks and WSGI pieces, the formats.
LEAVES = ("names", "errors", "typing", "formats")


def test_config_is_the_lowest_layer_but_the_leaves() -> None:
    """The options (``config/``) import nothing of meshmetrics but themselves and the
    leaves (not even inside a function), and the leaves import nothing of it."""
    leaves = {f"meshmetrics.{leaf}" for leaf in LEAVES}
    for path in (PACKAGE / "config").glob("*.py"):
        above = [
            t
            for t in _all_imports(path)
            if t not in leaves and not t.startswith("meshmetrics.config")
        ]
        assert above == [], f"config/{path.name} imports {above}"
    for leaf in LEAVES:
        assert _all_imports(PACKAGE / f"{leaf}.py") == set(), leaf


def test_the_configuration_and_its_types_load_no_flask() -> None:
    """``meshmetrics.typing`` names Flask's types for type checkers only, so the
    configuration (which types ``metrics_auth`` with it) loads no Flask."""
    code = "import sys, meshmetrics.config, meshmetrics.typing; print(' '.join(sys.modules))"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert [m for m in out.stdout.split() if m.split(".")[0] in ("flask", "werkzeug")] == []


def test_options_are_declared_once_as_config_fields() -> None:
    """The option table is derived from MeshConfig's fields: same names, same order, the
    fields' converters and defaults."""
    from meshmetrics.config import OPTIONS

    declared = fields(MeshConfig)
    assert [o.name for o in OPTIONS] == [f.name for f in declared]
    for option, declared_field in zip(OPTIONS, declared, strict=True):
        assert option.convert in declared_field.metadata.values()
        if declared_field.default is not MISSING:
            assert option.default == declared_field.default


#: The most lines a module of src/meshmetrics holds, unless its docstring says why in a
#: line starting "Over 500 lines:" (one concept that does not split).
MAX_MODULE_LINES = 500
#: Modules over the limit whose docstring this branch may not edit, with the reason.
OVERSIZED: dict[str, str] = {}


def test_no_module_is_over_500_lines_without_a_reason() -> None:
    over = {}
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        name = str(path.relative_to(PACKAGE))
        reason = name in OVERSIZED or any(
            line.startswith("Over 500 lines:") for line in docstring.splitlines()
        )
        if lines > MAX_MODULE_LINES and not reason:
            over[name] = lines
    assert over == {}


def _shared_literals() -> dict[str, str]:
    """The string constants of ``names.py`` (but ``"meshmetrics"`` itself, a word many
    other things are named too): literal -> its name there."""
    found = {}
    for node in ast.parse((PACKAGE / "names.py").read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and node.value.value != "meshmetrics"
        ):
            found[node.value.value] = ast.unparse(node.targets[0])
    return found


def _strings_outside_slots(tree: ast.AST) -> list[str]:
    """The string constants of ``tree``, but attribute names listed in ``__slots__``."""
    slots = {
        id(const)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__slots__"
        for const in ast.walk(node.value)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in slots
    ]


def test_shared_names_live_in_one_leaf_module() -> None:
    """Issue 24 item 3: the names several layers share (extension and environ keys, the
    exemplar label, the span counters, the logger) are spelled in ``names.py`` alone,
    which imports nothing of meshmetrics, so every layer can import it."""
    names = PACKAGE / "names.py"
    literals = _shared_literals()
    assert {"trace_id", "meshmetrics.span", "meshmetrics_spans_dropped_total"} <= set(literals)
    spelled = {}
    for path in PACKAGE.rglob("*.py"):
        if path == names:
            continue
        tree = ast.parse(path.read_text())
        again = sorted(literals[s] for s in _strings_outside_slots(tree) if s in literals)
        if again:
            spelled[str(path.relative_to(PACKAGE))] = again
    assert spelled == {}


def _asks_for_a_logger_or_keys_extensions(node: ast.AST) -> bool:
    """``logging.getLogger(...)``, or ``<x>.extensions[<literal>]`` / ``.get(<literal>)``."""
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("getLogger"):
        return True
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.value).endswith(".extensions") and isinstance(
            node.slice, ast.Constant
        )
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".extensions.get"):
        return bool(node.args) and isinstance(node.args[0], ast.Constant)
    return False


def test_one_logger_and_one_extension_key() -> None:
    """No module but ``names.py`` asks ``logging`` for a logger, or keys ``app.extensions``
    with a literal: they import ``log`` and the keys from there."""
    found = [
        f"{path.relative_to(PACKAGE)}: {ast.unparse(node)}"
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "names.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if _asks_for_a_logger_or_keys_extensions(node)
    ]
    assert found == []


def test_every_span_exporter_answers_an_export_result() -> None:
    """Issue 24 item 4: a class of the package with an ``export`` method is a span exporter
    (``SpanExporter``): it answers an ``ExportResult`` and shuts down with ``shutdown()``;
    nothing beside the result (an attribute read with ``getattr``) says what became of a
    batch."""
    exporters = []
    for folder in ("tracing", "testing"):
        for path in (PACKAGE / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                methods = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
                if "export" not in methods:
                    continue
                exporters.append(node.name)
                returns = methods["export"].returns
                assert returns is not None, node.name
                assert ast.unparse(returns) == "ExportResult", node.name
                assert "shutdown" in methods, node.name
                assert "close" not in methods, node.name
    assert len(exporters) >= 5, exporters
    processor = (PACKAGE / "tracing" / "processor.py").read_text()
    assert "getattr(exporter" not in processor
    assert "getattr(self._exporter" not in processor


#: Every private name of a dependency meshmetrics relies on, in one place: only
#: ``_compat.py`` uses them (each has a test in tests/test_compat.py), and a new one is
#: added here knowingly.  (Strings too: ``getattr(metric, "_type")`` is a private read.)
DEPENDENCY_PRIVATE = {
    "flask": {"_cv_request"},
    "prometheus_client": {
        "_INITIAL_MMAP_SIZE",
        "_buckets",
        "_capacity",
        "_child_samples",
        "_collector_to_names",
        "_compose_exemplar_string",
        "_count",
        "_created",
        "_documentation",
        "_file",
        "_escape",
        "_f",
        "_fname",
        "_init_value",
        "_is_legacy_labelname_rune",
        "_key",
        "_labelnames",
        "_labelvalues",
        "_lock",
        "_m",
        "_metrics",
        "_name",
        "_pack_two_doubles_func",
        "_positions",
        "_sum",
        "_target_info",
        "_type",
        "_unit",
        "_upper_bounds",
        "_use_created",
        "_used",
        "_value",
    },
}


#: Underscored, but documented public API (the object behind Flask's proxies).
DOCUMENTED = {"_get_current_object"}


def _private_names_used(path: Path, *, on_self: bool) -> set[str]:
    """``_x`` names ``path`` reads (attributes, on ``self`` too if ``on_self``; imported
    names; names read with ``getattr`` or looked up in ``vars()``), less the module's own
    top-level names and Flask's documented ``_get_current_object()``."""
    tree = ast.parse(path.read_text())
    own = {
        target.id if isinstance(target, ast.Name) else ""
        for node in tree.body
        for target in (node.targets if isinstance(node, ast.Assign) else [])
    }
    own |= {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
    }
    own |= {
        n.target.id
        for n in tree.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    own |= {  # attributes the module's own classes set (self._lock = ...)
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and not on_self
    }
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
            on_self or not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "hasattr"):
            used.update(a.value for a in node.args[1:2] if isinstance(a, ast.Constant))
        elif isinstance(node, ast.Compare) and "vars(" in ast.unparse(node):  # "_x" in vars(o)
            used.update(c.value for c in ast.walk(node) if isinstance(c, ast.Constant))
    return {n for n in used if n.startswith("_") and not n.startswith("__")} - own - DOCUMENTED


def test_dependencies_private_names_are_listed_and_only_in_compat() -> None:
    """Issue 24 item 5: the private names of Flask and prometheus_client that _compat.py
    uses are exactly the listed ones; no other module uses one of them."""
    listed = set().union(*DEPENDENCY_PRIVATE.values())
    assert _private_names_used(PACKAGE / "_compat.py", on_self=True) == listed
    for path in PACKAGE.rglob("*.py"):  # (a module's own self._lock is its own)
        if path.name != "_compat.py":
            assert _private_names_used(path, on_self=False) & listed == set(), path
