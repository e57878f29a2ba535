from __future__ import annotations

import pytest

from rails.pii import find, iban_ok, luhn_ok, mask


@pytest.mark.parametrize("number", ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"])
def test_luhn_valid_card_numbers_are_masked(number: str) -> None:
    assert mask(f"my card is {number} thanks") == "my card is [CARD] thanks"


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "1234 5678 9012 3456"])
def test_luhn_invalid_card_numbers_are_left_alone(number: str) -> None:
    text = f"order reference {number}"
    assert "[CARD]" not in mask(text)
    assert not luhn_ok(number.replace(" ", ""))


def test_iban_checksum_separates_real_ibans_from_lookalikes() -> None:
    assert iban_ok("GB82 WEST 1234 5698 7654 32")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert mask("pay GB82 WEST 1234 5698 7654 32 today") == "pay [IBAN] today"
    assert mask("pay DE89370400440532013000 now") == "pay [IBAN] now"
    assert "[IBAN]" not in mask("ref GB82WEST12345698765433")


def test_emails_phones_and_national_ids_are_masked() -> None:
    text = "Mail a.b@example.org, call +44 20 7946 0958, SSN 123-45-6789, NINO AB 12 34 56 C."
    assert mask(text) == "Mail [EMAIL], call [PHONE], SSN [US_SSN], NINO [UK_NINO]."


def test_invalid_ssn_areas_and_dates_are_not_pii() -> None:
    assert mask("000-12-3456 and 666-12-3456") == "000-12-3456 and 666-12-3456"
    assert mask("on 2024-11-23 at 10:30 we shipped build 20241123") == (
        "on 2024-11-23 at 10:30 we shipped build 20241123"
    )


def test_find_can_be_restricted_to_kinds() -> None:
    text = "a@b.co and 4111111111111111"
    assert [s.kind for s in find(text, ["card"])] == ["card"]
    assert [s.kind for s in find(text)] == ["email", "card"]


def test_number_failing_luhn_can_still_be_a_phone_number() -> None:
    assert mask("call 0151 496 0000 1234 now") == "call [PHONE] now"
    assert mask("card 4111 1111 1111 1112 here") == "card 4111 1111 1111 1112 here"  # not re-read in parts
