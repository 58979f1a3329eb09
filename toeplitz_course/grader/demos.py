"""Demonstration cells: the cells grading may leave unexecuted.

A *demonstration* is an instructor cell tagged ``demo`` in ``source/``: it draws a picture or
prints something for the student and earns no points. Building this course's figures costs about
three quarters of a graded notebook's kernel time, so grading skips demonstrations when that
provably cannot change a score (``SkipDemoCells`` in ``preprocessors``, through nbclient's own
``skip-execution`` tag):

* only a cell whose source is exactly the instructor's demonstration is skipped; a student who
  edited one gets it run, as written;
* a demonstration is run after all when any cell that *is* run reads a name whose value, in a full
  run, would come from it (``x = ...`` in the demo, ``x`` read later; a function parameter or a
  name rebound first does not count). The analysis is over-cautious: any cell it cannot parse, or
  that reaches names dynamically (``globals()``, ``eval``, ``get_ipython`` ...), makes every
  demonstration before it run;
* in a notebook with a manually graded cell (ex3_4's written answer, ``graded_by_hand``), the
  demonstrations that draw the pictures the answer is about run, figures drawn
  (``figures_graded_by_hand``: those that use pyplot between the previous autograded test and
  the answer), with whatever they read from other demonstrations: the person grading reads the
  answer against those pictures, and they must be the grader's, not the student's own outputs,
  which a student could forge;
* what this cannot see, the instructor guarantees and ``tests/test_project.py`` checks on the
  solutions: a demonstration mutates no object that later cells use and draws no random numbers
  that later cells would (the test runs each notebook with and without its demonstrations and
  compares every other cell's output and the random generators' states).

Cells are given as a list of code-cell sources in notebook order; indices refer to that list.
"""

from __future__ import annotations

import ast
import functools
import symtable
from collections.abc import Iterable, Sequence

#: The tag that marks a demonstration in the instructor's source notebook.
DEMO_TAG = "demo"

#: Names through which code can read a variable without naming it.
DYNAMIC = frozenset(
    {"globals", "locals", "vars", "eval", "exec", "get_ipython", "__import__", "__builtins__"}
)


def source_of(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def normalized(source: str) -> str:
    """The form in which two sources count as the same cell (line endings, outer blank space)."""
    return source.replace("\r\n", "\n").strip()


def demo_sources(nb: dict, tag: str = DEMO_TAG) -> set[str]:
    """The normalized sources of the code cells tagged ``tag`` in an instructor notebook."""
    return {
        normalized(source_of(cell))
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code" and tag in (cell.get("metadata", {}).get("tags") or [])
    }


def graded_by_hand(nb: dict) -> bool:
    """Whether a person grades a cell of the (release) notebook: nbgrader's manually graded
    answers (``grade`` and ``solution``) and tasks."""
    return any(_by_hand(cell) for cell in nb.get("cells", []))


def _by_hand(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader") or {}
    return bool(meta.get("task") or (meta.get("grade") and meta.get("solution")))


def figures_graded_by_hand(nb: dict, tag: str = DEMO_TAG) -> set[str]:
    """The demonstrations a person grading by hand looks at, as normalized sources: those that
    draw (read a name the notebook binds to ``matplotlib.pyplot``) between the last autograded
    test before a cell graded by hand and that cell. In 03 these are "the two pictures above"
    ex3_4 (the bars and the panels); the scan that only prints, and the demonstrations elsewhere,
    need not run. What the figures read from other demonstrations ``skippable`` runs too."""
    cells = nb.get("cells", [])
    pyplot = pyplot_names(source_of(c) for c in cells if c.get("cell_type") == "code")
    found: set[str] = set()
    section: list[str] = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if _by_hand(cell):
            found.update(section)
            section = []
        elif meta.get("grade"):  # an autograded test: what came before it is its section's
            section = []
        elif cell.get("cell_type") == "code" and tag in (
            cell.get("metadata", {}).get("tags") or []
        ):
            source = source_of(cell)
            if draws(source, pyplot):
                section.append(normalized(source))
    return found


def pyplot_names(sources: Iterable[str]) -> set[str]:
    """The names ``sources`` bind to ``matplotlib.pyplot`` (``import matplotlib.pyplot as plt``,
    ``from matplotlib import pyplot``); ``matplotlib`` itself when it is imported whole."""
    names: set[str] = set()
    for source in sources:
        tree = _parse(source)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "matplotlib.pyplot" and alias.asname:
                        names.add(alias.asname)
                    elif alias.name.split(".")[0] == "matplotlib" and not alias.asname:
                        names.add("matplotlib")
            elif isinstance(node, ast.ImportFrom) and node.module == "matplotlib":
                names.update(a.asname or a.name for a in node.names if a.name == "pyplot")
    return names


def draws(source: str, pyplot: set[str]) -> bool:
    """Whether a cell may draw a figure: it reads one of the ``pyplot`` names (a cell the
    analysis cannot read counts as drawing)."""
    reads = names_of(source).reads
    return reads is None or bool(reads & pyplot)


class Unknown(Exception):
    """The analysis cannot tell what a cell reads."""


class Names:
    """What one cell reads from earlier cells, and what it binds (``reads is None``: unknown).

    Read statement by statement (``symtable`` resolves what is global inside functions,
    classes and comprehensions): a statement reads the global names it references, unless the
    cell surely bound them before (a plain assignment, import, ``def`` or ``class``; a ``for``
    or ``with`` target inside its own body; what both branches of an ``if`` bind). ``binds``
    are the names it may bind, ``sure`` those it binds whenever it completes.
    """

    def __init__(self, source: str):
        self.binds: set[str] = set()
        self.sure: set[str] = set()
        self.reads: set[str] | None = set()
        tree = _parse(source)
        try:
            if tree is None:
                raise Unknown
            self.sure = _block(tree.body, set(), self.reads, self.binds)
        except Unknown:
            self.reads = None


@functools.lru_cache(maxsize=4096)
def names_of(source: str) -> Names:
    """``Names(source)``, remembered: most cells of a class are the instructor's."""
    return Names(source)


def _block(stmts: list[ast.stmt], sure: set[str], reads: set[str], binds: set[str]) -> set[str]:
    """Add what ``stmts`` read (unless in ``sure``) and bind; return what is sure after them."""
    sure = set(sure)
    for stmt in stmts:
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            _code(stmt.iter, sure, reads, binds)
            targets = _targets(stmt.target, sure, reads)
            binds |= targets
            _block(stmt.body, sure | targets, reads, binds)
            _block(stmt.orelse, sure, reads, binds)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                _code(item.context_expr, sure, reads, binds)
                if item.optional_vars is not None:
                    targets = _targets(item.optional_vars, sure, reads)
                    binds |= targets
                    sure |= targets
            sure = _block(stmt.body, sure, reads, binds)
        elif isinstance(stmt, ast.If):
            _code(stmt.test, sure, reads, binds)
            then = _block(stmt.body, sure, reads, binds)
            sure = then & _block(stmt.orelse, sure, reads, binds)
        elif isinstance(stmt, ast.While):
            _code(stmt.test, sure, reads, binds)
            _block(stmt.body, sure, reads, binds)
            _block(stmt.orelse, sure, reads, binds)
        else:
            bound = _code(stmt, sure, reads, binds)
            if isinstance(stmt, _SURE):
                sure |= bound
    return sure


def _code(node: ast.AST, sure: set[str], reads: set[str], binds: set[str]) -> set[str]:
    """Add the global names ``node`` reads (unless in ``sure``) and binds; return the latter."""
    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
        raise Unknown
    try:
        table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise Unknown from exc
    read, bound = _global_names(table)
    looked_up = _literal_lookups(node)
    if looked_up is not None:  # every globals() here is globals().get("name"): reads of names
        read = (read - {"globals"}) | looked_up
    if read & DYNAMIC:
        raise Unknown
    reads |= read - sure
    binds |= bound
    return bound


def _literal_lookups(node: ast.AST) -> set[str] | None:
    """The names ``node`` reads as ``globals().get("name")`` (how a test cell reads an answer that
    may not be defined), when that is the only way it uses ``globals``; else None."""
    names, lookups, uses = set(), 0, 0
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.id == "globals":
            uses += 1
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "get"
            and isinstance(n.func.value, ast.Call)
            and isinstance(n.func.value.func, ast.Name)
            and n.func.value.func.id == "globals"
            and not n.func.value.args
            and len(n.args) >= 1
            and isinstance(n.args[0], ast.Constant)
            and isinstance(n.args[0].value, str)
        ):
            names.add(n.args[0].value)
            lookups += 1
    return names if uses and uses == lookups else None


def _targets(target: ast.AST, sure: set[str], reads: set[str]) -> set[str]:
    """The names a ``for``/``with`` target binds; names it reads (``a[i]``) go to ``reads``."""
    bound = set()
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif node.id not in sure:
                reads.add(node.id)
    return bound


#: Top-level statements that bind their names whenever they complete.
_SURE = (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.FunctionDef,
         ast.AsyncFunctionDef, ast.ClassDef)  # fmt: skip


def _global_names(table: symtable.SymbolTable) -> tuple[set[str], set[str]]:
    """(global names referenced, global names assigned) anywhere in ``table`` and its children."""
    reads, binds = set(), set()
    module = table.get_type() == "module"
    for symbol in table.get_symbols():
        if not (module or symbol.is_global()):
            continue
        if symbol.is_referenced():
            reads.add(symbol.get_name())
        if symbol.is_assigned() or symbol.is_imported() or (module and symbol.is_namespace()):
            binds.add(symbol.get_name())
    for child in table.get_children():
        child_reads, child_binds = _global_names(child)
        reads |= child_reads
        binds |= child_binds
    return reads, binds


def _parse(source: str) -> ast.Module | None:
    # IPython line magics and shell escapes read no Python names the analysis must see.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def skippable(sources: Sequence[str], demos: Iterable[str]) -> set[int]:
    """Indices of the cells in ``sources`` that grading may leave unexecuted.

    A cell is a candidate when its normalized source is one of ``demos``. A candidate stays
    skipped unless a cell that runs reads a name whose value, in a full run, may come from it
    (it may be the last cell to have bound the name). Running a candidate after all makes its
    own reads count too, so this repeats until nothing changes.
    """
    demos = set(demos)
    skip = {i for i, source in enumerate(sources) if normalized(source) in demos}
    if not skip:
        return skip
    names = [names_of(source) for source in sources]
    skip -= {i for i in skip if names[i].reads is None}  # a demo we cannot read is run
    changed = True
    while changed and skip:
        changed = False
        last: dict[str, set[int]] = {}  # name -> the cells that may have bound it last
        for i, cell in enumerate(names):
            if i not in skip:
                if cell.reads is None:  # cannot tell what it reads: everything before it runs
                    needed = {j for j in skip if j < i}
                else:
                    needed = set().union(*(last.get(n, set()) for n in cell.reads)) & skip
                if needed:
                    skip -= needed
                    changed = True
                    break
            for name in cell.binds:
                last[name] = {i} if name in cell.sure else last.get(name, set()) | {i}
    return skip
