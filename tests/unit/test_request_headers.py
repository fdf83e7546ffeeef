"""Header values a template makes (unit tests; the CLI tests are in test_any_erp_probe)."""

from __future__ import annotations

import pytest

from integrator.mapping.expr import TemplateError
from integrator.stages.request import header_value


@pytest.mark.parametrize("value", ["Token abc", "café", "a\tb", "", "urn:Create#1"])
def test_text_a_header_can_carry_passes_unchanged(value: str) -> None:
    assert header_value("X", value) == value


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("a\r\nX-Injected: 1", "line break"),
        ("a\nb", "line break"),
        ("a\rb", "line break"),
        ("a\x00b", "U+0000"),
        ("a\x7fb", "U+007F"),
        ("Şişli", "U+015E"),
        ("emoji \U0001f600", "U+1F600"),
    ],
)
def test_text_a_header_cannot_carry_fails_naming_the_header_not_the_value(
    value: str, said: str
) -> None:
    with pytest.raises(TemplateError) as err:
        header_value("X-Note", value)
    text = str(err.value)
    assert "'X-Note'" in text and said in text and "nothing was sent" in text
    assert "Injected" not in text
