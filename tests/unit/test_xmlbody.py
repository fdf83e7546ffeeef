"""XML bodies: every conversion rule of ``parse_xml``, what it refuses (and that the refusal
quotes nothing of the document), SOAP 1.1 and 1.2 Faults, ``parse_answer``'s choice by
content type, and the encoders (``xml_escape``, ``form_bytes``, ``encode_body``)."""

from __future__ import annotations

import json
import resource
import time
from typing import Any

import pytest
import requests

from integrator.connectors.bodies import parse_answer, parse_json
from integrator.connectors.xmlbody import (
    MAX_DEPTH,
    MAX_NODES,
    SoapFault,
    encode_body,
    fault_text,
    form_bytes,
    parse_xml,
    soap_fault,
    xml_escape,
)
from integrator.errors import PermanentError, UnreadableAnswer

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def xml(text: str) -> Any:
    return parse_xml(text.encode("utf-8"), "POST erp:/soap")


def refused(data: bytes) -> str:
    with pytest.raises(UnreadableAnswer) as info:
        parse_xml(data, "POST erp:/soap")
    return str(info.value)


# ------------------------------------------------------------------------ conversion rules
def test_the_root_is_the_one_key() -> None:
    assert xml("<Order>1</Order>") == {"Order": "1"}


def test_text_only_element_is_its_string_stripped() -> None:
    assert xml("<a><b>  Ali Veli \n</b><n>42</n></a>") == {"a": {"b": "Ali Veli", "n": "42"}}


def test_empty_and_whitespace_only_elements_are_null() -> None:
    assert xml("<a><b/><c></c><d>  \n </d></a>") == {"a": {"b": None, "c": None, "d": None}}
    assert xml("<a/>") == {"a": None}


def test_attributes_are_at_names_and_text_goes_to_hash_text() -> None:
    assert xml('<a id="7" kind="x">hello</a>') == {
        "a": {"@id": "7", "@kind": "x", "#text": "hello"}
    }
    assert xml('<a id="7"/>') == {"a": {"@id": "7"}}
    assert xml('<a id="7">  </a>') == {"a": {"@id": "7"}}


def test_children_with_text_keep_it_as_hash_text() -> None:
    assert xml("<a>one<b>2</b>three</a>") == {"a": {"b": "2", "#text": "onethree"}}


def test_repeated_siblings_are_a_list_in_document_order() -> None:
    doc = xml("<r><i>1</i><x/><i>2</i><i><k>3</k></i></r>")
    assert doc == {"r": {"i": ["1", "2", {"k": "3"}], "x": None}}
    assert list(doc["r"]) == ["i", "x"]  # first appearance
    assert xml("<r><i>1</i></r>") == {"r": {"i": "1"}}  # one is not a list


def test_namespaces_are_dropped_from_elements_and_attributes() -> None:
    doc = xml(
        f'<soap:Envelope xmlns:soap="{SOAP11}" xmlns:m="urn:m" xmlns="urn:default">'
        '<soap:Body><m:CreateOrderResponse m:ref="r1"><OrderId>123</OrderId>'
        "</m:CreateOrderResponse></soap:Body></soap:Envelope>"
    )
    assert doc == {"Envelope": {"Body": {"CreateOrderResponse": {"@ref": "r1", "OrderId": "123"}}}}


def test_same_local_name_in_two_namespaces_is_one_list() -> None:
    assert xml('<r xmlns:a="urn:a" xmlns:b="urn:b"><a:x>1</a:x><b:x>2</b:x></r>') == {
        "r": {"x": ["1", "2"]}
    }


def test_cdata_is_text_and_references_are_resolved() -> None:
    assert xml("<a><![CDATA[<b>&amp;</b>]]> &amp; &#x15F;&lt;</a>") == {"a": "<b>&amp;</b> & ş<"}


def test_comments_and_processing_instructions_are_dropped() -> None:
    assert xml('<?xml version="1.0"?><!-- c --><a><?pi x?><b>1</b><!-- d --></a>') == {
        "a": {"b": "1"}
    }


def test_declared_encodings_are_honoured() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-9"?><a>şğ</a>'.encode("iso-8859-9")
    assert parse_xml(data, "x") == {"a": "şğ"}
    data = '<?xml version="1.0" encoding="UTF-16"?><a>ş</a>'.encode("utf-16")
    assert parse_xml(data, "x") == {"a": "ş"}


def test_the_value_is_json_and_paths_work_on_it() -> None:
    from integrator.mapping.paths import select

    doc = xml(
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><R><OrderId>9</OrderId><L n="1"/><L n="2"/>'
        "</R></s:Body></s:Envelope>"
    )
    json.dumps(doc, allow_nan=False)
    assert select("Envelope.Body.R.OrderId", doc) == "9"
    assert select("$.Envelope.Body.R.L[1]['@n']", doc) == "2"


# ----------------------------------------------------------------------------- refusals
def test_depth_limit() -> None:
    ok = "<a>" * MAX_DEPTH + "</a>" * MAX_DEPTH
    assert parse_xml(ok.encode(), "x") is not None
    too = "<a>" * (MAX_DEPTH + 1) + "</a>" * (MAX_DEPTH + 1)
    assert f"nested deeper than {MAX_DEPTH} levels" in refused(too.encode())


def test_deep_nesting_is_refused_fast_and_small() -> None:
    data = b"<a>" * 100_000 + b"</a>" * 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    assert "nested deeper" in refused(data)
    assert time.monotonic() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_element_count_limit() -> None:
    assert parse_xml(b"<r>" + b"<i/>" * (MAX_NODES - 1) + b"</r>", "x") is not None
    assert "more than 100,000 elements" in refused(b"<r>" + b"<i/>" * MAX_NODES + b"</r>")
    # attributes count too
    many = b"<r>" + b'<i a="1" b="2" c="3"/>' * (MAX_NODES // 4 + 1) + b"</r>"
    assert "elements and attributes" in refused(many)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]><lolz>&lol9;</lolz>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.2:9/evil.dtd"><a/>',
        b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.2:9/p.dtd"> %p;]><a/>',
        b'<!DOCTYPE a [<!ENTITY big "' + b"x" * 10_000 + b'">]><a>' + b"&big;" * 1000 + b"</a>",
        b"<!DOCTYPE a><a/>",
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity", "quadratic",
         "bare-doctype"],
)  # fmt: skip
def test_any_dtd_is_refused_and_nothing_is_quoted(data: bytes) -> None:
    text = refused(data)
    assert "DTD" in text and "refused" in text
    for secret in ("passwd", "127.0.0.2", "lol", "big", "evil"):
        assert secret not in text


def test_an_undeclared_entity_is_not_well_formed() -> None:
    assert "undefined entity (entities are refused)" in refused(b"<a>&secret_name;</a>")
    assert "secret_name" not in refused(b"<a>&secret_name;</a>")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"<a><b></a>", "line 1, column 9: mismatched tag"),
        (b"<a>\n\n  <b>caf\xe9</b></a>", "line 3, column 9: not well-formed (invalid token)"),
        (b'<?xml version="1.0" encoding="UTF-8"?>\n<a>\xfe\xff</a>', "line 2"),
        (b'<?xml version="1.0" encoding="UTF-16"?><a/>', "encoding"),
        (b'<?xml version="1.0" encoding="x-made-up"?><a/>', "encoding that is unknown"),
        (b"<a>&#xD800;</a>", "invalid character number"),
        (b"<a>\xed\xa0\x80</a>", "not well-formed"),  # a UTF-8-encoded lone surrogate
        (b"<a>\x01</a>", "not well-formed"),
        (b"<a/><b/>", "junk after document element"),
        (b"OK - order received", "line 1, column 1: syntax error"),
    ],
)
def test_not_well_formed_names_line_and_column(data: bytes, says: str) -> None:
    text = refused(data)
    assert says in text, text
    assert text.startswith("POST erp:/soap answered with XML")
    assert "caf" not in text and "order received" not in text


def test_huge_attribute_is_read_once_in_linear_time() -> None:
    value = "x" * (8 * 1024 * 1024)
    started = time.monotonic()
    doc = parse_xml(f'<a v="{value}"/>'.encode(), "x")
    assert doc["a"]["@v"] == value
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------------------- SOAP faults
FAULT11 = f"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="{SOAP11}">
  <soap:Body>
    <soap:Fault>
      <faultcode>soap:Client</faultcode>
      <faultstring xml:lang="en">Unknown product SKU-9</faultstring>
      <detail><err:Error xmlns:err="urn:erp"><Code>E404</Code></err:Error></detail>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>"""

FAULT12 = f"""<env:Envelope xmlns:env="{SOAP12}" xmlns:e="urn:erp">
  <env:Body>
    <env:Fault>
      <env:Code>
        <env:Value>env:Sender</env:Value>
        <env:Subcode><env:Value>e:InvalidOrder</env:Value></env:Subcode>
      </env:Code>
      <env:Reason>
        <env:Text xml:lang="tr">Geçersiz sipariş</env:Text>
        <env:Text xml:lang="en-US">Invalid order</env:Text>
      </env:Reason>
      <env:Detail><e:Field>number</e:Field></env:Detail>
    </env:Fault>
  </env:Body>
</env:Envelope>"""


def test_soap11_fault() -> None:
    fault = soap_fault(xml(FAULT11))
    assert fault == SoapFault("1.1", "Client", "Unknown product SKU-9", {"Error": {"Code": "E404"}})
    assert fault is not None and fault.sender_side


def test_soap11_server_fault_is_not_sender_side() -> None:
    doc = xml(FAULT11.replace("soap:Client", "soap:Server"))
    fault = soap_fault(doc)
    assert fault is not None and fault.code == "Server" and not fault.sender_side


def test_soap11_dotted_client_code_and_no_detail() -> None:
    doc = xml(
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><s:Fault><faultcode>s:Client.Auth</faultcode>'
        "<faultstring>no</faultstring></s:Fault></s:Body></s:Envelope>"
    )
    fault = soap_fault(doc)
    assert fault == SoapFault("1.1", "Client.Auth", "no", None)
    assert fault.sender_side


def test_soap12_fault() -> None:
    fault = soap_fault(xml(FAULT12))
    assert fault == SoapFault(
        "1.2", "Sender", "Invalid order", {"Field": "number"}, subcode="InvalidOrder"
    )
    assert fault.sender_side


@pytest.mark.parametrize("code", ["Receiver", "VersionMismatch", "MustUnderstand"])
def test_soap12_other_codes_are_not_sender_side(code: str) -> None:
    doc = xml(FAULT12.replace("env:Sender", f"env:{code}"))
    fault = soap_fault(doc)
    assert fault is not None and fault.code == code and not fault.sender_side


def test_soap12_single_reason_without_language() -> None:
    doc = xml(
        f'<e:Envelope xmlns:e="{SOAP12}"><e:Body><e:Fault><e:Code><e:Value>e:Receiver</e:Value>'
        "</e:Code><e:Reason><e:Text>down</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>"
    )
    assert soap_fault(doc) == SoapFault("1.2", "Receiver", "down", None)


def test_no_fault() -> None:
    ok = f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><R><Id>1</Id></R></s:Body></s:Envelope>'
    assert soap_fault(xml(ok)) is None
    assert soap_fault({"error": {"message": "json"}}) is None
    assert soap_fault(None) is None
    assert soap_fault(xml("<Envelope><Body>text</Body></Envelope>")) is None


def test_fault_with_html_inside_is_a_short_plain_message() -> None:
    page = (
        "<html><head><title>500</title><style>p{}</style></head><body>"
        + ("<p>Internal error &amp; more</p>" * 200)
        + "</body></html>"
    )
    escaped = page.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    doc = xml(FAULT11.replace("Unknown product SKU-9", escaped))
    fault = soap_fault(doc)
    assert fault is not None
    assert fault.message.startswith("500 Internal error & more Internal error")
    assert "<" not in fault.message and len(fault.message) <= 500
    # the page as elements (an XHTML page inside faultstring): its words, in order
    doc = xml(
        FAULT11.replace("Unknown product SKU-9", "<html><body><h1>Bad</h1> gateway</body></html>")
    )
    fault = soap_fault(doc)
    assert fault is not None and fault.message == "Bad gateway"


def test_fault_text_for_error_messages() -> None:
    assert fault_text(FAULT11.encode()) == "SOAP Fault Client: Unknown product SKU-9"
    assert fault_text(FAULT12.encode()) == "SOAP Fault Sender: Invalid order"
    assert fault_text(b"<r>no fault</r>") == ""
    assert fault_text(BILLION_LAUGHS) == ""  # refused: the caller shows its own excerpt
    assert fault_text(b"<html><body>broken") == ""


# --------------------------------------------------------------------------- parse_answer
def answer(body: bytes, ctype: str | None, status: int = 200, unreadable: str = "") -> Any:
    resp = requests.Response()
    resp.status_code, resp._content = status, body
    if ctype is not None:
        resp.headers["Content-Type"] = ctype
    if unreadable:
        resp.unreadable = unreadable  # type: ignore[attr-defined]
    return resp


@pytest.mark.parametrize(
    "ctype", ["text/xml", "application/xml; charset=utf-8", "application/soap+xml", "TEXT/XML"]
)
def test_parse_answer_reads_xml_types(ctype: str) -> None:
    assert parse_answer(answer(b"<a><b>1</b></a>", ctype), "x") == {"a": {"b": "1"}}


@pytest.mark.parametrize(
    "ctype", [None, "application/json", "text/plain", "application/vnd.xml-ish+json"]
)
def test_parse_answer_reads_everything_else_as_json(ctype: str | None) -> None:
    assert parse_answer(answer(b'{"a": 1}', ctype), "x") == {"a": 1}
    with pytest.raises(UnreadableAnswer, match="not JSON"):
        parse_answer(answer(b"<a/>", ctype), "x")


def test_parse_answer_refusal_carries_status_and_connector() -> None:
    with pytest.raises(UnreadableAnswer) as info:
        parse_answer(answer(BILLION_LAUGHS, "text/xml", 201), "POST erp:/soap", "erp")
    exc = info.value
    assert str(exc).startswith("POST erp:/soap answered 201 with XML that declares a DTD")
    assert exc.status == 201 and exc.connector == "erp" and exc.failure == "unreadable answer"


def test_parse_answer_empty_xml_is_none_and_transport_failures_are_kept() -> None:
    assert parse_answer(answer(b"", "text/xml"), "x") is None
    with pytest.raises(UnreadableAnswer, match="more than 10 bytes"):
        parse_answer(answer(b"<a", "text/xml", unreadable="more than 10 bytes"), "x", "erp")


def test_parse_answer_is_parse_json_for_json() -> None:
    for body in (b'{"a": [1, 2.5, null]}', b"", b"[]"):
        r = answer(body, "application/json")
        assert parse_answer(r, "x") == parse_json(r, "x")


# ------------------------------------------------------------------------------- encoders
def test_xml_escape_text_and_attribute_safe() -> None:
    value = "a<b>&\"c'\td\ne\rf]]>"
    escaped = xml_escape(value)
    assert escaped == "a&lt;b&gt;&amp;&quot;c&apos;&#9;d&#10;e&#13;f]]&gt;"
    # the round trip through a parser, in text and in both kinds of attribute
    doc = xml(f"<r a=\"{escaped}\" b='{escaped}'>{escaped}<x>{escaped}</x></r>")
    assert doc["r"]["@a"] == doc["r"]["@b"] == value
    assert doc["r"]["x"] == value.strip()


def test_xml_escape_scalars() -> None:
    assert [xml_escape(v) for v in (None, True, False, 3, 2.5, "ş😀")] == [
        "", "true", "false", "3", "2.5", "ş😀"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ok\x00no", "U+0000 at position 2"),
        ("\x1b[31m", "U+001B at position 0"),
        ("a\ud800", "U+D800 at position 1"),
        ("\ufffe", "U+FFFE"),
        (float("nan"), "nan cannot be placed in XML"),
        (float("inf"), "inf cannot be placed"),
        ({"a": 1}, "a dict cannot be placed in XML"),
    ],
)
def test_xml_escape_refuses_what_xml_cannot_carry(value: Any, says: str) -> None:
    with pytest.raises(PermanentError, match=r"^order\.note: ") as info:
        xml_escape(value, "order.note")
    assert says in str(info.value)


def test_form_bytes() -> None:
    data = {"name": "Ali Veli", "q": "a&b=c+d", "n": 3, "p": 2.5, "t": True, "f": False,
            "z": None, "tr": "ş"}  # fmt: skip
    assert form_bytes(data) == (
        b"name=Ali+Veli&q=a%26b%3Dc%2Bd&n=3&p=2.5&t=true&f=false&z=&tr=%C5%9F"
    )
    assert form_bytes({}) == b""


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"ok": 1, "lines": [1, 2]}, "form field 'lines' is a list"),
        ({"addr": {"city": "x"}}, "form field 'addr' is an object"),
        ({"x": float("nan")}, "form field 'x' is nan"),
        ({"b": b"raw"}, "form field 'b' is a bytes"),
        ({"s": "a\udc80"}, "lone surrogate"),
        (["a", "b"], "not a list"),
    ],
)
def test_form_bytes_refuses_nested_values_naming_the_key(data: Any, says: str) -> None:
    with pytest.raises(PermanentError) as info:
        form_bytes(data, "POST erp:/orders")
    assert says in str(info.value) and "Nothing was sent" in str(info.value)


def test_encode_body_by_type() -> None:
    assert encode_body({"a": 1}, "application/json") == (b'{"a": 1}', "application/json")
    assert encode_body([1], "") == (b"[1]", "application/json")
    assert encode_body({"a": "ş"}, "application/x-www-form-urlencoded; charset=utf-8") == (
        b"a=%C5%9F", "application/x-www-form-urlencoded; charset=utf-8"
    )  # fmt: skip
    assert encode_body("<a>ş</a>", "text/xml") == ("<a>ş</a>".encode(), "text/xml; charset=utf-8")
    assert encode_body("<a/>", "application/soap+xml; charset=utf-8") == (
        b"<a/>", "application/soap+xml; charset=utf-8"
    )  # fmt: skip
    latin = '<?xml version="1.0" encoding="ISO-8859-9"?><a>ş</a>'
    assert encode_body(latin, "text/xml; charset=iso-8859-9") == (
        latin.encode("iso-8859-9"), "text/xml; charset=iso-8859-9"
    )  # fmt: skip
    assert encode_body("a=1&b=2", "application/x-www-form-urlencoded") == (
        b"a=1&b=2", "application/x-www-form-urlencoded"
    )  # fmt: skip
    assert encode_body('{"a": 1}', "application/json") == (b'{"a": 1}', "application/json")


@pytest.mark.parametrize(
    ("value", "ctype", "says"),
    [
        ("<Order><Id>1</Order>", "text/xml", "not well-formed at line 1, column 15: mismatched"),
        ("<a/>\n<b/>", "application/xml", "line 2, column 1: junk after document element"),
        ("<!DOCTYPE a><a/>", "text/xml", "declares a DTD"),
        ('<?xml version="1.0" encoding="ISO-8859-1"?><a/>', "text/xml", "declares encoding"),
        ("<a>ş</a>", "text/xml; charset=us-ascii", "that us-ascii cannot carry"),
        ("x", "text/plain; charset=nope", "charset 'nope', which is unknown"),
        ({"a": 1}, "text/xml", "a dict cannot be sent as text/xml"),
        ({"a": [1]}, "application/x-www-form-urlencoded", "form field 'a' is a list"),
        ({"a": float("nan")}, "application/json", "NaN"),
    ],
)
def test_encode_body_refuses_before_sending(value: Any, ctype: str, says: str) -> None:
    with pytest.raises(PermanentError) as info:
        encode_body(value, ctype, "POST erp:/soap")
    text = str(info.value)
    assert says in text, text
    assert text.startswith("POST erp:/soap: ")


def test_xml_text_refuses_a_list_of_bare_values_and_writes_named_ones() -> None:
    from integrator.connectors.xmlbody import xml_text
    from integrator.errors import PermanentError

    assert xml_text({"Sku": ["A", "B"]}) == "<Sku>A</Sku><Sku>B</Sku>"
    with pytest.raises(PermanentError) as err:
        xml_text(["A", "B"])
    assert "no element names" in str(err.value)
