"""Unit tests: mapping adapter, selectors, templates, redaction, config, fake-transport HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor, strip_channel_conf
from integrator.errors import AmbiguousWriteError, PermanentError, RetriableError
from integrator.mapping import MappingSpecError, apply_chain, render, render_value, select
from integrator.mapping.expr import Scope

HERE = Path(__file__).resolve().parents[1]


def test_jolt_conformance_suite_passes() -> None:
    """All 235 reference cases pass through integrator.mapping:apply_chain."""
    p = subprocess.run(
        [
            sys.executable,
            str(HERE / "jolt_conformance" / "check.py"),
            "--adapter",
            "integrator.mapping:apply_chain",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=HERE.parent,
    )
    assert p.returncode == 0, p.stdout[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "235 passed, 0 failed"


def test_apply_chain_errors_name_the_operation() -> None:
    """A bad operation is reported with its index."""
    with pytest.raises(MappingSpecError, match=r"operation \[1\]"):
        apply_chain([{"operation": "shift", "spec": {"a": "b"}}, {"operation": "nope"}], {})
    with pytest.raises(MappingSpecError, match="empty"):
        apply_chain([], {})


def test_select_jmespath_and_jsonpath() -> None:
    """JMESPath by default, JSONPath with a $ prefix."""
    doc = {"results": [{"id": "E1"}], "count": 1}
    assert select("results[0].id", doc) == "E1"
    assert select("$.results[0].id", doc) == "E1"
    assert select("$.missing", doc) is None


def test_templates() -> None:
    """${_order.x} from the order, ${name} from attributes; a whole placeholder keeps its type."""
    order = {"number": "1001", "pk": 7}
    assert render("/q?n=${_order.number}", Scope(order)) == "/q?n=1001"
    assert render_value({"id": "${_order.pk}", "s": "n-${tag}"}, Scope(order, {"tag": "x"})) == {
        "id": 7,
        "s": "n-x",
    }


def test_redactor_masks_keys_and_values() -> None:
    """Secret keys are masked; known secret values are scrubbed anywhere."""
    r = Redactor(["s3cr3t-value"])
    out = r.redact({"password": "p", "note": "has s3cr3t-value inside", "items": [{"token": 1}]})
    assert out == {"password": "***", "note": "has *** inside", "items": [{"token": "***"}]}


def test_strip_channel_conf_learns_its_secrets() -> None:
    """channel.conf is masked whole (every value, any key; the shape kept); its secrets are
    scrubbed elsewhere afterwards."""
    r = Redactor()
    order = {"channel": {"conf": {"password": "chan-pass-1", "server": "https://x", "n": 3}}}
    strip_channel_conf(order, r)
    assert order["channel"]["conf"] == {"password": "***", "server": "***", "n": "***"}
    assert r.scrub("copy of chan-pass-1") == "copy of ***"


class FakeAdapter(BaseAdapter):
    """A transport that raises or answers as told (unit tests only)."""

    def __init__(self, exc: Exception | None = None, status: int = 200, body: bytes = b"{}"):
        super().__init__()
        self.exc, self.status, self.body = exc, status, body

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if self.exc is not None:
            raise self.exc
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = self.status, self.body, request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def connector(adapter: BaseAdapter, **config: Any) -> Connector:
    config.setdefault("retry_disabled", True)
    c = Connector(
        ConnectorConfig(name="erp", host="http://erp.test", **config), Redactor(["tok-123456"])
    )
    c.session.mount("http://", adapter)
    return c


@pytest.mark.parametrize(
    ("adapter", "idempotent", "error"),
    [
        (FakeAdapter(status=503), False, AmbiguousWriteError),
        (FakeAdapter(status=503), True, RetriableError),
        (FakeAdapter(status=429), False, RetriableError),
        (FakeAdapter(status=422), False, PermanentError),
        (FakeAdapter(exc=requests.ReadTimeout()), False, AmbiguousWriteError),
        (FakeAdapter(exc=requests.ReadTimeout()), True, RetriableError),
        (
            FakeAdapter(exc=requests.ConnectionError("Connection aborted. RemoteDisconnected")),
            False,
            AmbiguousWriteError,
        ),
        (
            FakeAdapter(exc=requests.ConnectionError("NewConnectionError: refused")),
            False,
            RetriableError,
        ),
        (FakeAdapter(exc=requests.ConnectTimeout()), False, RetriableError),
    ],
)
def test_error_mapping(adapter: BaseAdapter, idempotent: bool, error: type[Exception]) -> None:
    """Statuses and transport failures map to what the runner must do."""
    with pytest.raises(error):
        connector(adapter).request("POST", "/api/orders/", json_body={}, idempotent=idempotent)


def test_error_messages_are_scrubbed() -> None:
    """An ERP echoing a secret in its error body does not leak it."""
    c = connector(FakeAdapter(status=400, body=b'{"error": "bad token tok-123456"}'))
    with pytest.raises(PermanentError) as info:
        c.request("POST", "/api/orders/?api_key=zzz", json_body={})
    assert "tok-123456" not in str(info.value) and "api_key" not in str(info.value)


def test_redact_fast_path_returns_clean_documents_as_they_are() -> None:
    from integrator.connectors.redact import MASK, Redactor

    r = Redactor(['se"cret\\value', "plain-secret"])
    clean = {"a": [1, {"b": "text"}], "n": None}
    assert r.redact(clean) is clean
    assert r.redact({"x": 'has se"cret\\value inside'}) == {"x": f"has {MASK} inside"}
    assert r.redact([{"note": "plain-secret!"}]) == [{"note": f"{MASK}!"}]
    assert r.redact({"nested": {"api_key": "k"}}) == {"nested": {"api_key": MASK}}
    assert r.redact({"Authorization": ""}) == {"Authorization": ""}
