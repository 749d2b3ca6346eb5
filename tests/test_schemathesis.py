"""Schemathesis (a third-party fuzzer) over every operation of the service's OpenAPI
description, against the ASGI app over a sent campaign, with a valid API key: no 5xx,
no status the description leaves out, no response off its schema."""

import base64
import shutil
from collections.abc import Iterator
from contextlib import chdir
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.authoring.campaigns import Project
from engine.config import Settings
from engine.service.app import create_app
from engine.store import open_database
from tests.conftest import SHIPPED, copy_project, scratch_herald

KEY = "fuzz-key-0123456789abcdef0123456789"
USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
nl-1,,Noor de Vries,NL,nl,Europe/Amsterdam
"""
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]  # not negative_data_rejection: an unknown query parameter is ignored, as HTTP allows


@pytest.fixture(scope="module")
def service_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = copy_project(tmp_path_factory.mktemp("fuzz"))
    (project.root / "users.csv").write_text(USERS, encoding="utf-8")
    herald = scratch_herald(project)
    herald.env["HERALD_API_KEY"] = KEY
    for command in (("users", "import", "users.csv"), ("plan", SHIPPED), ("send", SHIPPED)):
        with chdir(project.root):
            assert herald(*command).exit_code == 0, command
    engine = open_database(herald.db_url)
    # Enough failed tokens per minute for the whole run: the limit has its own tests.
    yield create_app(
        Settings.from_env(herald.env), engine, Project(project.root), failures_per_minute=10**6
    )
    engine.dispose()
    shutil.rmtree(project.root / "var", ignore_errors=True)


@pytest.fixture(scope="module")
def api_schema(service_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", service_app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_within_its_description(api_schema: Any, mode: Any) -> None:
    # Hypothesis driven directly: schemathesis's own pytest loader (from_fixture) does
    # not run under pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 4
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.path == "/healthz":
            continue  # it takes no input: there is nothing to break

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=60,
            deadline=None,
            database=None,  # nothing written into the working tree
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

        fuzz()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


EDGES = [
    (
        "GET",
        "/api/users/{user_id}/notifications",
        {"user_id": "de-1"},
        {"cursor": _b64("before:²")},
    ),
    (
        "GET",
        "/api/users/{user_id}/notifications",
        {"user_id": "de-1"},
        {"cursor": _b64(f"before:{2**64}")},
    ),
    (
        "GET",
        "/api/users/{user_id}/notifications",
        {"user_id": "de-1"},
        {"cursor": _b64("before:0")},
    ),
    ("GET", "/api/users/{user_id}/notifications", {"user_id": "de-1"}, {"cursor": "é" * 10}),
    ("GET", "/api/users/{user_id}/notifications", {"user_id": "a\x00b"}, {}),
    ("POST", "/api/notifications/{notification_id}/seen", {"notification_id": 2**63}, {}),
    ("POST", "/api/notifications/{notification_id}/seen", {"notification_id": 2**63 - 1}, {}),
    ("POST", "/api/notifications/{notification_id}/seen", {"notification_id": 0}, {}),
]


@pytest.mark.parametrize(("method", "path", "path_parameters", "query"), EDGES)
def test_the_edges_schemathesis_found_are_answered_within_the_description(
    api_schema, method, path, path_parameters, query
):
    operation = api_schema[path][method]
    case = operation.Case(path_parameters=path_parameters, query=query)
    response = case.call(headers={"X-API-Key": KEY})
    assert response.status_code < 500
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize(
    "body",
    [
        {"token": "a\ud800.b"},
        {"token": "x" * 300},
        {"token": "abc.def", "reason": "\x00\ud83d"},
    ],
)
def test_odd_objection_bodies_are_answered_within_the_description(api_schema, body):
    case = api_schema["/api/objections"]["POST"].Case(body=body)
    response = case.call()
    assert response.status_code == 404
    case.validate_response(response, checks=CHECKS)


def test_an_unparseable_body_is_answered_within_the_description(api_schema):
    case = api_schema["/api/objections"]["POST"].Case(body={"token": "x"})
    for content in (b"\xff\xfe", b"{", b"[]"):
        response = case.call(data=content, headers={"Content-Type": "application/json"})
        assert response.status_code in (400, 422)
        case.validate_response(response, checks=CHECKS)
