"""A bounded schemathesis run over the portal's own OpenAPI, in process: every operation, with
valid and invalid inputs (schemathesis' positive and negative modes), as a center admin and as a
unit admin, answers without a server error (no 5xx and no exception escaping the app) and as its
OpenAPI says: a status the operation documents, the documented content type, a body matching the
documented schema (issue 11, point 6).

Bounded and reproducible: a fixed number of examples per operation and mode, derandomized (the same
inputs on every run), no example database, no shrinking. It ends by itself in about a minute. A
failure lists each operation with the first input that broke it, to be fixed at the root and pinned
in ``test_found_by_fuzzing.py``.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    Failure,
    FailureGroup,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response

from tests.factories import Factory
from vmportal.unit.models import Unit

#: Examples per operation and generation mode, by role (the center admin reaches every operation).
EXAMPLES = {"center_admin": 8, "unit_admin": 4}

#: Operations that end the caller's own session, so every later call would only see 401.
_SESSION_ENDING = {("POST", "/api/v1/auth/logout")}


#: What each answer is checked for, besides "no 5xx": its status is one the operation documents,
#: its content type is the documented one, and its body matches the documented schema.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def _failures(exc: BaseException) -> str:
    parts = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
    return "; ".join(f"{type(e).__name__}: {str(e)[:200]}" for e in parts)


def _probe(op: Any, mode: GenerationMode, h: dict[str, str], examples: int, found: list[str]) -> int:
    """Run ``examples`` generated calls of ``op``; each server error goes to ``found``. Answers the
    number of calls made."""
    calls = 0

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def probe(case: Case) -> None:
        nonlocal calls
        calls += 1
        where = f"{mode.value}: path={case.path_parameters} query={case.query} body={case.body!r:.200}"
        try:
            r = case.call(headers=h)
        except Exception as exc:  # the app raised: a 500 in production
            found.append(f"{where} raised {exc!r:.300}")
            return
        if r.status_code >= 500:
            found.append(f"{where} answered {r.status_code} {r.text[:300]}")
            return
        try:
            case.validate_response(r, checks=CONFORMANCE)
        except (Failure, FailureGroup) as exc:  # one per broken check, or a group of them
            found.append(f"{where} answered {r.status_code}: {_failures(exc)} {r.text[:200]}")

    with contextlib.suppress(Unsatisfiable):  # an operation without inputs has no invalid ones
        probe()
    return calls


def _run(
    client: TestClient, headers: Callable[[], dict[str, str]], examples: int
) -> tuple[int, dict[str, list[str]]]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    found: dict[str, list[str]] = collections.defaultdict(list)
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]  # an operation the schema cannot describe raises here
        if (op.method.upper(), op.path) in _SESSION_ENDING:
            continue
        h = headers()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls += _probe(op, mode, h, examples, found[f"{op.method.upper()} {op.path}"])
    return calls, {label: errors for label, errors in found.items() if errors}


def _report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{label} ({len(v)}x): {v[0]}" for label, v in sorted(found.items()))


def _seed(factory: Factory) -> Unit:
    """Records for the generated ids to find: a unit with a VM, an IP pool."""
    unit = factory.unit()
    factory.vm(unit)
    factory.pool(cidr="10.77.0.0/24")
    return unit


def _headers_of(
    client: TestClient, factory: Factory, make_user: Callable[[], Any]
) -> Callable[[], dict[str, str]]:
    """A valid token for each operation: a generated call may have deactivated the user, or
    revoked its sessions; then a new one is made."""
    current: dict[str, str] = {}

    def headers() -> dict[str, str]:
        nonlocal current
        if not current or client.get("/api/v1/auth/me", headers=current).status_code != 200:
            current = factory.login(client, make_user())
        return current

    return headers


@pytest.mark.parametrize("role", sorted(EXAMPLES))
def test_no_operation_answers_a_server_error(client: TestClient, factory: Factory, role: str) -> None:
    unit = _seed(factory)
    headers = _headers_of(
        client, factory, lambda: factory.user(role, None if role == "center_admin" else unit)
    )
    calls, found = _run(client, headers, EXAMPLES[role])
    assert calls > 500, f"the run should reach the API's operations, made {calls} calls"
    assert not found, f"server errors in {calls} calls:\n{_report(found)}"


def test_the_conformance_checks_catch_an_undocumented_status_and_a_body_off_the_schema(
    client: TestClient, factory: Factory
) -> None:
    """The run above is only as good as its checks: they refuse what the portal must not answer."""
    h = factory.login(client, factory.user("center_admin"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    case = schema["/api/v1/pools/{pool_id}"]["GET"].Case(path_parameters={"pool_id": 9})
    answer = case.call(headers=h)
    assert answer.status_code == 404
    case.validate_response(answer, checks=CONFORMANCE)  # the real answer conforms

    def altered(status: int, content: bytes) -> Response:
        return Response(status, answer.headers, content, answer.request, answer.elapsed, answer.verify)

    for status, content, failure in (
        (418, answer.content, "Undocumented status code"),
        (404, b'{"error": 3}', "Response violates schema"),
    ):
        with pytest.raises((Failure, FailureGroup)) as caught:
            case.validate_response(altered(status, content), checks=CONFORMANCE)
        assert failure in _failures(caught.value)
