"""Integrity flags: what a person should look at in a submission. Flags never change a score.

``scan`` compares a submitted notebook with the release students started from, and reads the
autograded copy for what happened when it ran:

================  ================================================================================
kind              meaning
================  ================================================================================
tag               a cell carries a tag that changes execution (skip-execution, raises-exception)
edited_test       a locked test cell's source differs from the release (restored before grading)
deleted_test      a test cell of the release is missing (re-added before grading)
duplicate         a grade id appears more than once (a copied cell)
patching          student code changes what other code sees or runs: assigns to (or ``setattr``,
                  ``del``) attributes of torch, numpy, math, builtins, sys or our package; writes
                  through ``vars(...)``, ``globals()``, ``sys.modules``; runs code from text
                  (``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``,
                  ``get_ipython().run_cell``). The detail names each form.
uses_selfcheck    an answer cell uses the self-checks cell's internals: its hidden helpers
                  (``_self_checks`` and the rest the release's cell binds), the tables, the key
                  function (module ``toeplitz_self_checks``, its salt, ``hashlib``), the tables'
                  hashes, or ``self_check`` other than called once at the top of a cell (in a
                  loop, a ``try``, a function: asking the judge until it says yes). The answer
                  spaces of the value exercises are small, so such a cell can search them; the
                  grader still verifies every answer itself, a person decides what it was.
nbgrader_env      student code looks at where it runs: NBGRADER_* variables, the environment,
                  the host or user name, the process or user id, ``/proc`` (behaves differently
                  when graded?)
timeout           a cell ran out of time when graded
kernel_died       the kernel died when graded
limit             the kernel reached a sandbox limit (memory, processes, disk, CPU time, open files)
not_sandboxed     the run did not confine student code (``grade --no-sandbox``), in every record
recovered         the editor dropped nbgrader metadata; staging recovered it from the release
                  (``recovery``): "N of M answer cells placed", and which were not (they score 0)
hand_grade_reset  a hand grade (formgrader) was cleared by a regrade: the answer it was given for
                  changed, or the notebook could not be graded this time (``handgrades``)
old_answer        an answer is right for another variant's numbers (``c.Course.variant``: the
                  default one, or ``previous_variants``), not this course's; it scored 0. The
                  detail names the variant, so ``report`` says which one the answers match
================  ================================================================================

A recovered notebook is scanned as recovered (``Staged.raw``): the tests recovery matched are not
"deleted", and a matched test whose source differs from the release is still ``edited_test``.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..course import colab
from ..course.contract import EXECUTION_TAGS, VERDICT_KEY

WATCHED_MODULES = {
    "torch",
    "np",
    "numpy",
    "math",
    "builtins",
    "__builtins__",
    "F",
    "nn",
    "toeplitz_course",
    "hidden",
    "checks",
    "probe",
    "verdicts",
    "channel",
    "IPython",
    "sys",
}


def nbgrader_meta(cell: dict) -> dict:
    """A cell's nbgrader metadata ({} when it has none or it is not a dict)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def cell_source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


#: Names the generated self-checks cell binds besides its two entry points (``grader/visible``
#: BODY). The release's own cell is read as well (``_release_self_checks``), so a name added
#: there is watched without a change here.
SELF_CHECK_NAMES = frozenset({"_install_self_checks", "_self_checks", "_json", "_sys", "_types"})
#: Its entry points. ``self_check("ex1_2")`` alone at the top of a cell is a student checking an
#: answer; in a loop, a ``try`` or a function it is asking the judge until it says yes.
#: ``answered`` says only whether there is an answer, so only using it other than by a call
#: (``answered.__self__``) reaches the tables.
SELF_CHECK_CALLS = frozenset({"self_check", "answered"})
#: The package the cell installs its modules as, and the key function's salt (``selfcheck.key``).
SELF_CHECK_MODULE = "toeplitz_self_checks"
SELF_CHECK_SALT = "toeplitz-course"
#: Hashing: the key function is SHA-256; nothing in this course's answers needs it.
HASH_MODULES = frozenset({"hashlib"})

#: Builtins that run text as code or import by name: patching needs no attribute assignment.
CODE_FROM_TEXT = frozenset({"exec", "eval", "compile", "__import__"})
#: Calls whose result is a namespace: an assignment through one writes into a module or the
#: notebook's globals.
NAMESPACE_CALLS = frozenset(
    {"vars", "globals", "locals", "getattr", "__import__", "importlib.import_module"}
)
_MUTATORS = frozenset({"update", "setdefault", "pop", "popitem", "clear", "__setitem__"})
#: IPython's ways of running text as a cell or writing into the user's namespace.
SHELL_RUNNERS = frozenset(
    {"run_cell", "run_code", "runcode", "ex", "ev", "push", "user_ns", "user_global_ns"}
)
#: Where the code runs: the host, the user, the process, the environment.
ENV_PROBES = frozenset(
    {
        "socket.gethostname",
        "socket.getfqdn",
        "socket.gethostbyname",
        "platform.node",
        "platform.uname",
        "os.uname",
        "os.getlogin",
        "os.getuid",
        "os.geteuid",
        "os.getpid",
        "os.getppid",
        "os.environ",
        "os.environb",
        "os.getenv",
        "os.putenv",
        "getpass.getuser",
    }
)
_ENV_TEXT = ("NBGRADER_", "HOSTNAME", "/proc", "/sys/", "/.dockerenv", "/run/")
_DETAIL_TEXT = 40


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _transform_ipython(source: str) -> str | None:
    """``source`` with IPython's syntax (magics, ``!``, ``?``) as the Python IPython runs."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - the grader has IPython
        return None
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - whatever IPython cannot read, neither can the kernel
        return None


def _parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(source)
    # IPython syntax, broken code, NUL bytes; a cell nested deeper than the parser goes (the
    # word search below still reads it) must not make the student a grader error.
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    transformed = _transform_ipython(source)
    if transformed is None:
        return None
    try:
        return ast.parse(transformed)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_TEXT else text[: _DETAIL_TEXT - 1] + "…"


def _bound_imports(tree: ast.AST) -> dict[str, str]:
    """Name -> the dotted module path an import in ``tree`` binds it to."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


@dataclass(frozen=True)
class _Analysis:
    """What one parse of a cell finds: names its imports bind, every (root name, text) it
    assigns to, deletes or ``setattr``s through, and what it uses that a person should see."""

    imports: tuple[tuple[str, str], ...]
    targets: tuple[tuple[str, str], ...]
    # (kind, form): patching, uses_selfcheck and nbgrader_env findings that need no context
    # beyond the cell and the self-checks' names
    findings: tuple[tuple[str, str], ...]
    magic_code: tuple[str, ...]  # the Python text of %time-like magics, analysed on its own


@functools.lru_cache(maxsize=4096)
def _analyse(source: str) -> _Analysis | None:
    """One parse of ``source`` (None when unparsable, even as IPython).

    Cached: the instructor's own unlocked cells come back unchanged in every submission.
    """
    tree = _parse(source)
    if tree is None:
        return None
    imports = _bound_imports(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    targets: list[tuple[str, str]] = []
    findings: list[tuple[str, str]] = []
    magic_code: list[str] = []

    def dotted(node: ast.AST) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(imports.get(node.id, node.id))
        return ".".join(reversed(parts))

    def namespace_call(node: ast.AST) -> str | None:
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in NAMESPACE_CALLS:
                return name
        return None

    def target(node: ast.AST) -> None:
        if isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                target(element)
            return
        if isinstance(node, ast.Starred):
            target(node.value)
            return
        if not isinstance(node, (ast.Attribute, ast.Subscript)):
            return
        root = _root(node)
        if isinstance(root, ast.Name):
            targets.append((root.id, ast.unparse(node)))
        elif namespace_call(root) or _shell(root):
            findings.append(("patching", f"assigns to {_short(ast.unparse(node))}"))

    def _shell(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "get_ipython"
        )

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                top = module.split(".")[0]
                if top == "importlib":
                    findings.append(("patching", "importlib"))
                elif top == SELF_CHECK_MODULE:
                    findings.append(("uses_selfcheck", f"imports {module}"))
                elif top in HASH_MODULES:
                    findings.append(("uses_selfcheck", f"imports {top}"))
        elif isinstance(node, (ast.Assign, ast.Delete)):
            for t in node.targets:
                target(t)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            target(node.target)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"setattr", "delattr"} and node.args:
                first = node.args[0]
                name = _root_name(first)
                text = f"{func.id}({_short(ast.unparse(first))}, ...)"
                if name is not None:
                    targets.append((name, text))
                if isinstance(_root(first), ast.Call):
                    findings.append(("patching", text))
            if (
                isinstance(func, ast.Attribute)
                and func.attr in _MUTATORS
                and namespace_call(func.value)
            ):
                findings.append(("patching", f"{_short(ast.unparse(func))}(...)"))
            if (
                isinstance(func, ast.Attribute)
                and func.attr in {"run_line_magic", "run_cell_magic"}
                and _shell(func.value)
            ):
                magic_code += [
                    a.value for a in node.args[1:] if isinstance(a, ast.Constant) and a.value
                ]
        elif isinstance(node, ast.Attribute) and _shell(node.value):
            if node.attr in SHELL_RUNNERS:
                findings.append(("patching", f"get_ipython().{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            findings += _text_findings(text)
        if isinstance(node, (ast.Name, ast.Attribute)) and not isinstance(
            parents.get(node), ast.Attribute
        ):
            findings += _name_findings(dotted(node))
        if isinstance(node, ast.Name) and node.id in SELF_CHECK_CALLS:
            use = _entry_point_use(node, parents)
            if use:
                findings.append(("uses_selfcheck", use))
    return _Analysis(
        tuple(sorted(imports.items())), tuple(targets), tuple(findings), tuple(magic_code)
    )


def _text_findings(text: str) -> list[tuple[str, str]]:
    found = []
    if SELF_CHECK_MODULE in text or SELF_CHECK_SALT in text:
        found.append(("uses_selfcheck", f"the text {_short(text)!r}"))
    elif text in SELF_CHECK_NAMES:
        found.append(("uses_selfcheck", f"the name {text!r} as text"))
    if text.startswith(_ENV_TEXT):
        found.append(("nbgrader_env", f"the text {_short(text)!r}"))
    if text in CODE_FROM_TEXT:
        found.append(("patching", f"the name {text!r} as text"))
    return found


def _name_findings(name: str | None) -> list[tuple[str, str]]:
    """What an outermost name or attribute chain uses (``name``: resolved through imports)."""
    if name is None:
        return []
    top = name.split(".")[0]
    found = []
    if name == "sys.modules" or name.startswith("sys.modules."):
        found.append(("patching", "sys.modules"))
    if top == "importlib":
        found.append(("patching", "importlib"))
    if name in CODE_FROM_TEXT or name.removeprefix("builtins.") in CODE_FROM_TEXT:
        found.append(("patching", f"{name.removeprefix('builtins.')}(...)"))
    if top in HASH_MODULES:
        found.append(("uses_selfcheck", name))
    if top == SELF_CHECK_MODULE or top in SELF_CHECK_NAMES:
        found.append(("uses_selfcheck", name))
    if name in ENV_PROBES or any(name.startswith(p + ".") for p in ENV_PROBES):
        found.append(("nbgrader_env", name))
    return found


def _entry_point_use(node: ast.Name, parents: dict) -> str | None:
    """How ``self_check``/``answered`` is used, when it is not a plain check (else None)."""
    parent = parents.get(node)
    if not (isinstance(parent, ast.Call) and parent.func is node):
        if isinstance(parent, ast.Attribute):
            return f"{node.id}.{parent.attr}"
        return f"{node.id} as a value"
    if node.id != "self_check":
        return None
    context = None
    above = parents.get(parent)
    statement = above
    while above is not None:
        if isinstance(above, (ast.For, ast.AsyncFor, ast.While, ast.comprehension)) or isinstance(
            above, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
        ):
            context = context or "in a loop"
        elif isinstance(above, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            context = context or "in a try"
        elif isinstance(above, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            context = context or "in a function"
        above = parents.get(above)
    if context is None and isinstance(statement, ast.Expr):
        if isinstance(parents.get(statement), ast.Module):
            return None
    return f"self_check(...) {context or 'inside an expression'}"


def module_aliases(source: str) -> set[str]:
    """Names ``source`` binds to watched modules (``import toeplitz_course.kernel.hidden as h``
    binds h)."""
    analysis = _analyse(source)
    if analysis is None:
        return set()
    return {name for name, module in analysis.imports if module.split(".")[0] in WATCHED_MODULES}


def imported_names(source: str) -> set[str]:
    """Every name an import in ``source`` binds (a module, or something of one)."""
    analysis = _analyse(source)
    return {name for name, _ in analysis.imports} if analysis else set()


def patched_names(source: str, aliases: set[str] = frozenset()) -> list[str]:
    """Attribute assignments, ``setattr`` calls and ``del`` on watched modules in ``source``."""
    watched = WATCHED_MODULES | set(aliases)
    analysis = _analyse(source)
    if analysis is None:
        return [m for m in watched if f"{m}." in source and "setattr" in source]
    return [text for name, text in analysis.targets if name in watched]


#: For a cell no parser reads: the words of each finding, searched for in its text.
_FALLBACK = (
    ("patching", re.compile(r"\b(exec|eval|compile|__import__)\s*\("), "{0}(...)"),
    ("patching", re.compile(r"\b(importlib|sys\.modules|get_ipython\(\)\.run_cell)\b"), "{0}"),
    ("patching", re.compile(r"\b(globals|vars)\(.*?\)\s*(\[|\.update)"), "{0}() writes"),
    (
        "uses_selfcheck",
        re.compile(
            r"\b(_self_checks|_install_self_checks|toeplitz_self_checks"
            r"|toeplitz-course|hashlib)\b"
        ),
        "{0}",
    ),
    (
        "nbgrader_env",
        re.compile(
            r"\b(NBGRADER_\w*|gethostname|getfqdn|platform\.node|uname"
            r"|getuser|environ|getenv)\b|/proc\b"
        ),
        "{0}",
    ),
)


def findings(
    source: str, *, modules: set[str] = frozenset(), self_checks: SelfCheckNames | None = None
) -> list[tuple[str, str]]:
    """(kind, form) of everything ``source`` does that a person should see: ``patching``,
    ``uses_selfcheck``, ``nbgrader_env``. ``modules``: names the student's cells bind to
    modules (``setattr`` on one is patching); ``self_checks``: the release cell's names."""
    names = self_checks or SelfCheckNames()
    try:
        analysis = _analyse(source)
    except RecursionError:  # a tree too deep to unparse: read as words, as unparsable code is
        analysis = None
    if analysis is None:
        found = []
        for kind, pattern, form in _FALLBACK:
            found += [(kind, form.format(m.group(0))) for m in pattern.finditer(source)]
        if any(h in source for h in names.hashes):
            found.append(("uses_selfcheck", "a hash of the self-checks' tables"))
        return sorted(set(found))
    found = list(analysis.findings)
    for root, text in analysis.targets:
        if text.startswith(("setattr(", "delattr(")) and root in modules:
            found.append(("patching", text))
    if names.extra:
        for name in _names(source) & names.extra:
            found.append(("uses_selfcheck", name))
    hashes = _strings(source) & names.hashes
    if hashes:
        found.append(("uses_selfcheck", "a hash of the self-checks' tables"))
    for code in analysis.magic_code:
        found += findings(code, modules=modules, self_checks=names)
    return sorted(set(found))


@functools.lru_cache(maxsize=4096)
def _names_and_strings(source: str) -> tuple[frozenset[str], frozenset[str]]:
    tree = _parse(source)
    if tree is None:
        return frozenset(), frozenset()
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    strings = {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    return frozenset(names), frozenset(strings)


def _names(source: str) -> frozenset[str]:
    return _names_and_strings(source)[0]


def _strings(source: str) -> frozenset[str]:
    return _names_and_strings(source)[1]


@dataclass(frozen=True)
class SelfCheckNames:
    """What the release's self-checks cell defines beyond ``SELF_CHECK_NAMES``: names it binds
    (``extra``) and the keys of its tables (``hashes``)."""

    extra: frozenset[str] = frozenset()
    hashes: frozenset[str] = frozenset()


_HASH = re.compile(r"\b[0-9a-f]{24}\b")


def self_check_names(sources: list[str]) -> SelfCheckNames:
    """The names and table keys of the self-checks cells among ``sources`` (locked cells that
    bind ``self_check``)."""
    extra: set[str] = set()
    hashes: set[str] = set()
    for source in sources:
        tree = _parse(source)
        if tree is None:
            continue
        bound = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound |= {a.asname or a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    bound |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        if "self_check" not in bound:
            continue
        extra |= bound - SELF_CHECK_CALLS - SELF_CHECK_NAMES
        hashes |= set(_HASH.findall(source))
    return SelfCheckNames(frozenset(extra), frozenset(hashes))


@functools.lru_cache(maxsize=64)
def _release_tests(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """grade id -> source of the release's locked test cells (cached per file version)."""
    released = json.loads(Path(path).read_text(encoding="utf-8"))
    tests = {}
    for cell in released.get("cells", []):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code":
            tests[meta["grade_id"]] = cell_source(cell)
    return tests


@functools.lru_cache(maxsize=64)
def _release_code(path: str, mtime_ns: int, size: int) -> tuple[frozenset[str], SelfCheckNames]:
    """The sources of the release's code cells (the instructor's code, wherever it sits), and
    the names and keys its self-checks cell defines.

    A cell that still holds one of those sources is not the student's, even where an editor
    dropped its metadata (the self-checks cell installs modules into sys.modules and runs
    ``exec``, by design; a demonstration calls ``answered``)."""
    released = json.loads(Path(path).read_text(encoding="utf-8"))
    code = [cell for cell in released.get("cells", []) if cell.get("cell_type") == "code"]
    locked = [cell_source(cell) for cell in code if nbgrader_meta(cell).get("locked")]
    # The Colab edition's runtime check comes back in every notebook handed in from Colab.
    sources = frozenset([colab.RUNTIME_CHECK.strip(), *(cell_source(c).strip() for c in code)])
    return sources, self_check_names(locked)


def _detail(name: str, kind: str, forms: list[str]) -> str:
    if kind == "patching":
        assigned = sorted({f.removeprefix("assigns to ") for f in forms if f.startswith("assigns")})
        others = sorted({f for f in forms if not f.startswith("assigns")})
        parts = []
        if assigned:
            parts.append(f"assigns to {', '.join(assigned[:5])}")
        if others:
            parts.append(f"uses {', '.join(others[:5])}")
        return f"{name} {'; '.join(parts)}"
    text = ", ".join(sorted(set(forms))[:6])
    if kind == "uses_selfcheck":
        return f"{name} uses the self-checks' internals: {text}"
    return f"{name} looks at where it runs: {text}"


def scan(
    notebook: str,
    *,
    submitted: dict | None,
    release: Path,
    autograded: dict | None,
) -> list[dict]:
    """The flags of one notebook of one student.

    ``submitted`` is the handed-in notebook's JSON (None if unreadable), ``release`` the path of
    the release notebook, ``autograded`` the autograded notebook's JSON (None if not graded).
    """
    flags: list[dict] = []

    def flag(kind: str, detail: str) -> None:
        flags.append({"notebook": notebook, "kind": kind, "detail": detail})

    if submitted is not None:
        cells = submitted.get("cells", [])
        release_tests: dict[str, str] = {}
        instructors: frozenset[str] = frozenset()
        names = SelfCheckNames()
        if release.exists():
            stat = release.stat()
            release_tests = _release_tests(str(release), stat.st_mtime_ns, stat.st_size)
            instructors, names = _release_code(str(release), stat.st_mtime_ns, stat.st_size)

        def students(cell: dict) -> bool:
            return (
                cell.get("cell_type") == "code"
                and not nbgrader_meta(cell).get("locked")
                and cell_source(cell).strip() not in instructors
            )

        ids = Counter(
            nbgrader_meta(c).get("grade_id") for c in cells if nbgrader_meta(c).get("grade_id")
        )
        for grade_id, count in sorted(ids.items()):
            if count > 1:
                flag("duplicate", f"cell {grade_id} appears {count} times")
        for grade_id, source in sorted(release_tests.items()):
            copies = [c for c in cells if nbgrader_meta(c).get("grade_id") == grade_id]
            if not copies:
                flag("deleted_test", f"test cell {grade_id} was deleted")
            elif any(cell_source(c).strip() != source.strip() for c in copies):
                flag("edited_test", f"test cell {grade_id} was edited")
        student_code = [cell_source(c) for c in cells if students(c)]
        aliases = set().union(*(module_aliases(src) for src in student_code))
        modules = set().union(*(imported_names(src) for src in student_code))
        for i, cell in enumerate(cells):
            tags = set(cell.get("metadata", {}).get("tags", []) or [])
            bad = sorted(tags & set(EXECUTION_TAGS))
            name = nbgrader_meta(cell).get("grade_id") or f"cell {i}"
            if bad:
                flag("tag", f"{name} tagged {', '.join(bad)}")
            if not students(cell):
                continue
            source = cell_source(cell)
            found: dict[str, list[str]] = {}
            for kind, form in findings(source, modules=modules, self_checks=names):
                found.setdefault(kind, []).append(form)
            patched = patched_names(source, aliases)
            if patched:
                found.setdefault("patching", []).extend(
                    p if p.startswith(("setattr(", "delattr(")) else f"assigns to {p}"
                    for p in patched
                )
            if "NBGRADER_EXECUTION" in source and "nbgrader_env" not in found:
                found["nbgrader_env"] = ["NBGRADER_EXECUTION"]
            for kind in ("patching", "uses_selfcheck", "nbgrader_env"):
                if kind in found:
                    flag(kind, _detail(name, kind, found[kind]))

    if autograded is not None:
        for i, cell in enumerate(autograded.get("cells", [])):
            for out in cell.get("outputs", []):
                if out.get("output_type") != "error":
                    continue
                name = nbgrader_meta(cell).get("grade_id") or f"cell {i}"
                if out.get("ename") in {"CellTimeoutError", "NotebookTimeout"}:
                    flag("timeout", f"{name} ran out of time")
                elif out.get("ename") == "DeadKernelError":
                    flag("kernel_died", f"the kernel died in {name}")
                elif out.get("ename") == "SandboxLimit":
                    flag("limit", f"{out.get('evalue')} ({name})")
            verdict = cell.get("metadata", {}).get(VERDICT_KEY)
            old = verdict.get("old_variant") if isinstance(verdict, dict) else None
            grade_id = nbgrader_meta(cell).get("grade_id")
            if isinstance(old, str) and nbgrader_meta(cell).get("grade") and grade_id:
                flag(OLD_ANSWER, f"{grade_id}: the right answer for variant {old!r}")
                flags[-1]["variant"] = old
    return flags


#: The flag of an answer that is right for another variant.
OLD_ANSWER = "old_answer"
