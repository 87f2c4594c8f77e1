"""The OpenAPI document: valid 3.1, a local /docs, and schema-driven fuzzing of every operation."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from mobilesam.serve import ServeLimits, create_app  # noqa: E402
from mobilesam.serve.openapi import to_openapi_31  # noqa: E402


@pytest.fixture(scope="module")
def app(small_model, tmp_path_factory):
    """The app with an annotation project (so its routes are fuzzed too), the decoder graph
    exported once up front (its first export takes longer than a request's timeout)."""
    from PIL import Image

    project = tmp_path_factory.mktemp("project")
    Image.new("RGB", (64, 48), (90, 120, 150)).save(project / "a.png")
    app = create_app(
        small_model,
        weights="random",
        project=project,
        decoder_cache=tmp_path_factory.mktemp("decoders"),
    )
    with TestClient(app) as client:
        assert client.get("/api/decoder.onnx").status_code == 200
    return app


def test_document_is_valid_openapi_31(app):
    validator = pytest.importorskip("openapi_spec_validator")
    doc = app.openapi()
    assert doc["openapi"].startswith("3.1")
    validator.validate(json.loads(json.dumps(doc)))
    text = json.dumps(doc)
    assert '"items": [' not in text
    size = doc["components"]["schemas"]["ImageInfo"]["properties"]["input_size"]
    assert size["items"] == {"type": "integer"} and size["minItems"] == size["maxItems"] == 2
    for path in ("/api/jobs/{job_id}", "/api/images/{image_id}/everything/jobs"):
        assert path in doc["paths"]
    submit = doc["paths"]["/api/images/{image_id}/everything/jobs"]["post"]["responses"]
    assert {"202", "503"} <= set(submit) and "Retry-After" in submit["503"]["headers"]


def test_tuples_are_written_the_31_way():
    mixed = [{"type": "integer"}, {"type": "string"}]
    assert to_openapi_31({"a": {"type": "array", "items": list(mixed)}}) == {
        "a": {"type": "array", "prefixItems": mixed, "minItems": 2, "maxItems": 2}
    }
    pair = [{"type": "number"}, {"type": "number"}]
    for key in ("items", "prefixItems"):
        assert to_openapi_31({"type": "array", key: list(pair)}) == {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
        }
    plain = {"type": "array", "items": {"type": "integer"}}
    assert to_openapi_31(dict(plain)) == plain


def test_docs_are_local_and_redoc_is_off(app):
    with TestClient(app) as c:
        r = c.get("/docs")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text and "<script" not in r.text
        assert "/api/jobs/{job_id}" in r.text and "/openapi.json" in r.text
        assert c.get("/redoc").status_code == 404


def test_document_states_this_apps_grid_limit(small_model):
    app = create_app(small_model, ServeLimits(max_points_per_side=40))
    props = app.openapi()["components"]["schemas"]["EverythingRequest"]["properties"]
    assert props["points_per_side"]["maximum"] == 40


@pytest.mark.slow
def test_fuzz_every_operation_and_sequences(app):
    """schemathesis: every operation with generated (valid and invalid) input, then stateful
    sequences (upload -> predict / jobs -> poll / cancel) by links it infers. Any 5xx, or a
    status, header or body the document does not declare, fails the test."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.stateful import run_state_machine_as_test
    from schemathesis.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Schema-valid input may still get a documented 400: a point outside the image, a box
    # outside it, labels not matching points. A schema cannot express those rules, so the
    # check "schema-valid input is accepted" does not apply; every other check does.
    excluded = [positive_data_acceptance]
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=25,
            derandomize=True,  # the same cases every run: a failure here is reproducible
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(excluded_checks=excluded)

        try:
            fuzz()
        except BaseException as e:  # every operation's failures (groups too), reported together
            if isinstance(e, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {e}")

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case, **kwargs):
            # A 32x32 segment everything on a busy 2-core machine can pass the default 10 s.
            kwargs.setdefault("timeout", 120)
            return super().call(case, **kwargs)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=excluded,
                transport_kwargs=kwargs,
            )

    machine = Machine
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=15,
                derandomize=True,
                stateful_step_count=6,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        failures.append(f"stateful: {e}")
    assert not failures, "\n\n".join(failures)
