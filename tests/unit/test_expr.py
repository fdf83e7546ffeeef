"""The expression language: roots, functions, absent values, lazy login, the load-time rule."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from integrator.mapping.expr import (
    PLANNED,
    Scope,
    TemplateError,
    check_expression,
    render,
    render_value,
)

ORDER = {"number": "1001", "lines": [{"sku": "A"}, {"sku": "B"}]}
CONNECTOR = {"Name": "erp", "Username": "bot", "Password": "pw-123456", "Properties": {"Db": "x"}}


def scope(**roots: Any) -> Scope:
    base: dict[str, Any] = {
        "vars": {"db": "prod", "n": 3},
        "connector": CONNECTOR,
        "data": {"a": 1},
    }
    return Scope(ORDER, {"erp.id": "E-1", "plain": "p"}, {**base, **roots})


def test_roots_functions_and_types() -> None:
    sc = scope(login={"result": [7, "k3y-abcdefgh"]})
    header = (
        "Session ${base64(concat(connector.Username, ':', login.result[0], ':', login.result[1]))}"
    )
    assert render(header, sc) == "Session " + base64.b64encode(b"bot:7:k3y-abcdefgh").decode()
    assert render_value(["${vars.db}", "${login.result[0]}", "${connector.Password}"], sc) == [
        "prod",
        7,
        "pw-123456",
    ]
    assert render_value("${data}", sc) == {"a": 1}  # one placeholder keeps its type
    assert render("${join('-', _order.lines[].sku)}", sc) == "A-B"
    assert render("${upper(vars.db)}/${lower('X')}/${vars.n}", sc) == "PROD/x/3"
    assert render("${erp.id}|${attributes.plain}", sc) == "E-1|p"  # attribute names


def test_absent_values_name_their_root() -> None:
    sc = scope(login={"result": None})
    for template, what in [
        ("${vars.nope}", "${vars.nope} is absent in vars"),
        ("${login.result}", "${login.result} is null in login"),
        ("${connector.Properties.Nope}", "is absent in connector"),
        ("${concat(vars.nope, 'x')}", "concat(): argument 1 is null"),
    ]:
        with pytest.raises(TemplateError) as err:
            render(template, sc)
        assert what in str(err.value)
    assert render("${vars.nope:-d}", sc) == "d"


def test_login_is_asked_for_only_when_read_and_planned_in_a_trace() -> None:
    calls: list[int] = []

    def login() -> dict[str, Any]:
        calls.append(1)
        return {"uid": 5}

    sc = scope(login=login)
    assert render("${vars.db}", sc) == "prod" and calls == []
    assert render("${login.uid}-${login.uid}", sc) == "5-5" and calls == [1]  # once per scope
    planned = render("${login.uid}", scope(login=PLANNED))
    assert planned == "<login.uid: from the login answer at run time>"


def test_check_expression_reports_what_validate_needs() -> None:
    assert check_expression("vars.db", known_vars={"db": 1}) is None
    assert "no constant 'dbx'" in str(check_expression("vars.dbx", known_vars={"db": 1}))
    assert check_expression("vars.dbx:-x", known_vars={}) is None  # a default: may be absent
    assert "unknown function sha1()" in str(check_expression("sha1(vars.db)"))
    assert "has no login answer" in str(check_expression("login.uid", login=False))
    assert "incomplete expression" in str(check_expression("_order.number["))


def test_environment_names_are_load_time_and_roots_are_run_time() -> None:
    from pathlib import Path

    from integrator.config.interpolate import interpolate
    from integrator.config.yamlfile import YamlDoc
    from integrator.errors import ConfigIssue

    doc = YamlDoc(
        "f.yaml",
        {
            "a": "${HOST}/x",
            "b": "${data}",
            "c": "${vars.db}",
            "d": "${database:-z}",
            "e": "${base64(x)}",
        },
        {},
    )
    issues: list[ConfigIssue] = []
    out = interpolate(doc, {"HOST": "h"}, issues, set(), Path("."))
    assert out == {"a": "h/x", "b": "${data}", "c": "${vars.db}", "d": "z", "e": "${base64(x)}"}
    assert issues == []


def test_braces_inside_a_placeholder_pair_up_and_quotes_hide_them() -> None:
    """A JMESPath multiselect hash (`{a: b}`) or a quoted `}` stays inside its `${…}`; an
    unclosed `${` is text."""
    sc = scope()
    assert render("x=${{k: vars.db}.k}!", sc) == "x=prod!"
    assert render_value("${data.{A: a}}", sc) == {"A": 1}
    assert render("${join('}', [vars.db, vars.db])}", sc) == "prod}prod"
    assert render("cost ${ 5", sc) == "cost ${ 5"
