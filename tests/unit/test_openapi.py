"""The OpenAPI document lists exactly the routes the worker registers, and ships with it.

The routes are read from the app ``create_app`` builds (no broker needed): every method a view
of ours answers on every path, against every operation of ``schemas/openapi.v1.json``. Faust's
own pages (``/``, ``/router/…``, ``/table/…``) are not part of the API: the access table
refuses them to every token.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from streams import resources
from streams.app import create_app
from streams.settings import Settings

DOC = json.loads(resources.openapi_text())
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("worker")))
    found = set()
    for route in app.web.web_app.router.routes():
        view = inspect.getclosurevars(route.handler).nonlocals["handler"]  # Faust's wrapper
        if route.method == "HEAD" or not type(view).__module__.startswith("streams."):
            continue
        found.add((route.method.lower(), route.resource.canonical))
    return found


def test_every_registered_route_is_documented_and_nothing_else(
    routes: set[tuple[str, str]],
) -> None:
    documented = {
        (method, path) for path, item in DOC["paths"].items() for method in item.keys() & METHODS
    }
    assert routes, "no routes found: the app did not register its views"
    assert routes - documented == set(), "registered but not in schemas/openapi.v1.json"
    assert documented - routes == set(), "documented but not registered"


def test_the_document_is_openapi_3_1_with_resolvable_references() -> None:
    assert DOC["openapi"].startswith("3.1.")
    text = json.dumps(DOC)
    for name in ("schemas", "responses", "parameters"):
        for key in DOC["components"][name]:
            assert f'"#/components/{name}/{key}"' in text or key == "Event", (name, key)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        _, _, kind, key = ref.split("/")
        assert key in DOC["components"][kind], ref
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_documented_event_is_the_published_event_schema() -> None:
    event = json.loads(resources.event_schema_text())
    del event["$schema"], event["$id"]
    assert DOC["components"]["schemas"]["Event"] == event


def test_the_document_ships_as_package_data() -> None:
    repo_copy = Path(__file__).parents[2] / "schemas" / resources.OPENAPI
    assert json.loads(repo_copy.read_text(encoding="utf-8")) == DOC
