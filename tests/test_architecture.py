"""Every query lives in a repository module (docs/architecture.md, "One shape for every domain").

The rule is checked by ``scripts/check_queries.py`` (run by ``make lint``); this runs the same check
over the tree, and shows on small samples what it reports and what it lets through, so a change to
the checker that would let a statement slip is seen here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_queries", ROOT / "scripts" / "check_queries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


check = _checker()


def findings(path: str, source: str) -> list[str]:
    return [f.what for f in check.check_source(path, source)]


def test_no_module_outside_the_repositories_runs_a_statement() -> None:
    found = [str(f) for f in check.check_tree(ROOT)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from sqlmodel import select\nq = select(X)\n",
        "from sqlmodel import select as s\nq = s(X)\n",
        "import sqlalchemy as sa\nq = sa.select(sa.func.count())\n",
        "import sqlalchemy\nq = sqlalchemy.delete(X)\n",
        "from sqlalchemy.dialects import postgresql\nq = postgresql.insert(X)\n",
        "from sqlalchemy import text\nq = text('SELECT 1')\n",
        "def f(session):\n    return session.exec(q).all()\n",
        "def f(conn):\n    conn.execute(q)\n",
        "def f(session):\n    return session.scalars(q)\n",
        "from vmportal.kit.sql import insert_or_nothing\ninsert_or_nothing(s, row, ['k'])\n",
        "from vmportal.kit import sql\nsql.insert_or_nothing(s, row, ['k'])\n",
    ],
)
def test_a_statement_in_a_service_is_reported_with_its_line(source: str) -> None:
    found = check.check_source("vmportal/unit/service.py", source)
    assert found, source
    assert all(f.path == "vmportal/unit/service.py" and f.line >= 1 for f in found)
    assert "outside a repository module" in str(found[0])


@pytest.mark.parametrize(
    "source",
    [
        # one row by its key, and the ORM's own writes of objects a repository returned
        "def f(session, row):\n    session.get(X, 1)\n    session.add(row)\n    session.delete(row)\n",
        # filter conditions handed to a repository function are not statements
        "from sqlmodel import col\nconditions = [col(X.state) == 'sent']\n",
        # names that only look like builders: a dict's update, the shipper's own select()
        "d = {}\nd.update(a=1)\n",
        "from vmportal.shipper.formats import select\nchosen = select(fmt, line)\n",
        "from sqlalchemy import ColumnElement, func\nn = func.count()\n",
    ],
)
def test_what_is_not_a_query_of_its_own_is_let_through(source: str) -> None:
    assert findings("vmportal/unit/service.py", source) == []


@pytest.mark.parametrize(
    "path",
    [
        "vmportal/unit/repository.py",
        "vmportal/vm/repository/sql.py",
        "vmportal/kit/locks.py",
        "vmportal/app/migrations/versions/0001_initial_schema.py",
        "vmportal/jobs/outbox.py",
    ],
)
def test_the_homes_of_statements_may_hold_them(path: str) -> None:
    assert findings(path, "from sqlmodel import select\ndef f(s):\n    return s.exec(select(X))\n") == []


def test_a_repository_name_elsewhere_in_the_path_is_no_home() -> None:
    # Only a domain's own repository module (or package) counts, not a folder that happens to be
    # called so further down, nor a module whose name merely starts with it.
    source = "from sqlmodel import select\nq = select(X)\n"
    assert findings("vmportal/unit/repository_helpers.py", source)
    assert findings("vmportal/web/unit/repository.py", source)
