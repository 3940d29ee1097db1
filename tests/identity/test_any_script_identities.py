"""Identities and keywords in any script compare as the services compare them (issue 19)."""

from __future__ import annotations

from crmhub.identities import email, normal_handle, phone
from crmhub.model import QueueTarget
from crmhub.sync.routing import Rule
from crmhub.sync.statements import stated_identities
from tests.sync.test_languages import sms


def test_emails_match_whatever_case_accents_form_or_domain_encoding() -> None:
    same = ["josé@exämple.com", "JOSÉ@EXÄMPLE.COM", "jose\u0301@exämple.com", "José@xn--exmple-cua.com"]
    assert {email(e).value for e in same} == {"josé@exämple.com"}
    assert email("strasse@example.de").value != email("straße@example.de").value  # two mailboxes, not folded
    assert email("Zhang.Wei@Example.CN").display == "Zhang.Wei@Example.CN"  # shown as written


def test_x_handles_compare_caselessly_also_typed_fullwidth() -> None:
    assert normal_handle("@Jane_Doe") == normal_handle("＠Ｊａｎｅ＿Ｄｏｅ") == "jane_doe"


def test_phones_in_any_digits_are_one_identity() -> None:
    assert phone("۰۹۱۲ ۳۴۵ ۶۷۸۹", "IR").value == phone("0912 345 6789", "IR").value == "+989123456789"
    assert phone("+٩٧١ ٥٠ ١٢٣ ٤٥٦٧").value == "+971501234567"
    stated = stated_identities("мой номер +٩٧١ ٥٠ ١٢٣ ٤٥٦٧, почта ИВАН@Почта.РФ", regions=["RU"], own=(),
                               known=lambda kind, values: set())
    assert [i.value for i in stated] == ["иван@почта.рф", "+971501234567"]


def test_keywords_match_in_any_script_case_and_normal_form() -> None:
    rule = Rule("refunds", {"salesforce": QueueTarget("billing")}, keywords=("возврат", "REMBOURSÉ", "İADE"))
    for text in ("Хочу ВОЗВРАТ денег", "rembourse\u0301 svp", "ｉａｄｅ istiyorum"):
        assert rule.mismatch(sms(1, 1, text), {}, case_open=False, in_hours=lambda _: True) is None, text
    assert rule.mismatch(sms(1, 1, "no match"), {}, case_open=False, in_hours=lambda _: True) is not None
