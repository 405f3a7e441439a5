"""Every query lives in a repository: no other module of ``vmportal`` builds a statement or runs one.

docs/architecture.md ("One shape for every domain") says a domain's queries live in its
``repository.py`` (or ``repository/`` package). import-linter cannot check that: it sees modules,
not the names imported from them, and takes only the top package of an external library
(``sqlmodel``, ``sqlalchemy``). This reads the syntax tree of every module instead and reports, with
file and line:

- a call of a statement builder imported from ``sqlalchemy`` or ``sqlmodel`` (``select``,
  ``update``, ``delete``, ``insert``, ``text``, ``union``, ``exists``…), whether imported by name
  (``from sqlmodel import select``) or reached through the module (``sa.select``,
  ``postgresql.insert``);
- a call of a method that runs one: ``.exec(``, ``.execute(``, ``.scalar(``, ``.scalars(``,
  ``.query(`` on whatever object (a session, a connection, an engine);
- a call of ``kit.sql.insert_or_nothing``, which runs an INSERT.

Not reported, because they are not queries of their own: ``session.get(Model, id)`` (one row by its
key, the ORM's identity map first), ``session.add`` / ``session.delete`` / ``session.flush`` of ORM
objects a repository returned, and building filter conditions (``col(X.state) == …``) that a
repository function takes as arguments.

Run: ``python scripts/check_queries.py [root]`` (``make lint``; ``tests/test_architecture.py`` too).
Exit 0 when clean, 1 with one line per finding.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The libraries whose statement builders count.
LIBRARIES = ("sqlalchemy", "sqlmodel")
#: Their names that build a statement (a call of any of them is a query in the making).
BUILDERS = frozenset(
    {
        "select",
        "update",
        "delete",
        "insert",
        "text",
        "union",
        "union_all",
        "intersect",
        "except_",
        "exists",
        "values",
        "lambda_stmt",
    }
)
#: Methods that run a statement, whatever object they are called on.
RUNNERS = frozenset({"exec", "execute", "scalar", "scalars", "query"})
#: Functions of the project that run a statement themselves.
PROJECT_RUNNERS = frozenset({("vmportal.kit.sql", "insert_or_nothing")})

#: Where statements belong, as regular expressions over the path under the repository root.
HOMES = tuple(
    re.compile(pattern)
    for pattern in (
        r"vmportal/[a-z_]+/repository\.py",  # a domain's queries
        r"vmportal/[a-z_]+/repository/[a-z_]+\.py",  # a domain large enough for a package of them (vm)
        r"vmportal/kit/[a-z_]+\.py",  # the mechanisms repositories use: paging, locks, insert-or-nothing
        r"vmportal/app/migrations/.+",  # frozen snapshots of the schema's history
        r"vmportal/[a-z_]+/models\.py",  # table definitions: ``text()`` there is DDL (an index's WHERE)
    )
)

#: Modules allowed to run statements although they are not a repository, each with its reason.
#: Keep it short: a new entry needs a reason a reviewer accepts.
ALLOWED = {
    # The task outbox is the jobs layer's own store, below every domain (it imports none, so it has
    # no repository to ask): its claims hold a connection of their own for a task's life, its
    # bookkeeping writes run in transactions of their own beside the task's.
    "vmportal/jobs/outbox.py": "the outbox's own store (jobs layer)",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} outside a repository module"


def is_home(relative: str) -> bool:
    return relative in ALLOWED or any(home.fullmatch(relative) for home in HOMES)


def _is_library(module: str) -> bool:
    return any(module == lib or module.startswith(lib + ".") for lib in LIBRARIES)


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        #: Local names bound to a builder (``from sqlmodel import select as sel`` → {"sel": "select"}).
        self.builders: dict[str, str] = {}
        #: Local names bound to a library module (``import sqlalchemy as sa`` → "sa").
        self.modules: set[str] = set()
        #: Local names bound to a project function that runs a statement.
        self.project: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_library(alias.name):
                # ``import sqlalchemy.dialects.postgresql`` binds ``sqlalchemy``; with ``as``, the alias.
                self.modules.add(alias.asname or alias.name.split(".")[0])
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            local = alias.asname or alias.name
            if _is_library(module):
                if alias.name in BUILDERS:
                    self.builders[local] = alias.name
                else:  # a submodule (``from sqlalchemy.dialects import postgresql``) or another name
                    self.modules.add(local)
            if (module, alias.name) in PROJECT_RUNNERS:
                self.project[local] = f"{module}.{alias.name}"
        self.generic_visit(node)

    def _report(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.builders:
                self._report(node, f"statement {self.builders[func.id]}()")
            elif func.id in self.project:
                self._report(node, f"{self.project[func.id]}()")
        elif isinstance(func, ast.Attribute):
            root = func.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if func.attr in BUILDERS and isinstance(root, ast.Name) and root.id in self.modules:
                self._report(node, f"statement {func.attr}()")
            elif func.attr in RUNNERS:
                self._report(node, f".{func.attr}() running a statement")
            elif func.attr == "insert_or_nothing":
                self._report(node, "insert_or_nothing()")
        self.generic_visit(node)


def check_source(relative: str, source: str) -> list[Finding]:
    """The findings of one module's text (``relative``: its path under the repository root)."""
    if is_home(relative):
        return []
    visitor = _Visitor(relative)
    visitor.visit(ast.parse(source, filename=relative))
    return visitor.findings


def check_tree(root: Path) -> Iterator[Finding]:
    for file in sorted((root / "vmportal").rglob("*.py")):
        relative = file.relative_to(root).as_posix()
        yield from check_source(relative, file.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    findings = list(check_tree(root))
    for finding in findings:
        print(finding)
    if findings:
        print(
            f"{len(findings)} statement(s) outside a repository module: move each into the owning "
            "domain's repository as a named function (docs/architecture.md, 'One shape')."
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
