"""docs/api.md's reference is the OpenAPI document's, and the document covers what the server does."""

from __future__ import annotations

import re
from pathlib import Path

from walletnode.consensus.replicator import Outcome
from walletnode.server import apidoc, app, openapi

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
APP_SOURCE = Path(app.__file__).read_text()


def test_the_reference_in_docs_is_generated_from_the_openapi_document() -> None:
    text = DOCS.read_text()
    assert apidoc.BEGIN in text and apidoc.END in text
    assert apidoc.with_reference(text, apidoc.render(openapi.document())) == text, (
        "docs/api.md is out of date: run python -m walletnode.server.apidoc docs/api.md"
    )


def test_every_route_of_the_server_is_in_the_document() -> None:
    """Client and admin routes together: the document describes both ports."""
    routes = {
        (r.method.lower(), r.resource.canonical)
        for make in (app.create_app, app.create_admin_app)
        for r in make(None).router.routes()  # type: ignore[arg-type]
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(method, path) for path, ops in openapi.document()["paths"].items() for method in ops}
    undocumented = routes - documented - {("get", "/openapi.json"), ("get", "/docs")}
    assert undocumented == set() and documented <= routes


def test_every_error_code_the_server_gives_is_documented_with_its_status() -> None:
    given = set(re.findall(r'(?:ApiError|error)\((\d{3}), "([a-z_]+)"', APP_SOURCE))
    given |= {(str(status), code) for status, code in app._HTTP_CODES.items()}
    given |= {("409", outcome.value) for outcome in Outcome if outcome != Outcome.APPLIED}
    documented = {(str(status), code) for code, status, _ in openapi.ERROR_CODES}
    assert given - documented == set()
    assert {code for _, code in given} >= {code for code, _, _ in openapi.ERROR_CODES}
