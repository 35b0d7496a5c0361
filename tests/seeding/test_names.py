"""Invented contact data must look real to validators yet belong to nobody."""

from __future__ import annotations

import random
import re

import pytest

from fhirsrv.seeding import names


def test_finess_and_siret_numbers_pass_their_luhn_check():
    rng = random.Random(7)
    for _ in range(200):
        finess = names.finess(rng, "29")
        siret = names.siret(rng)
        assert re.fullmatch(r"29\d{7}", finess) and names.luhn_valid(finess)
        assert re.fullmatch(r"\d{14}", siret) and names.luhn_valid(siret) and names.luhn_valid(siret[:9])


def test_luhn_rejects_a_changed_digit():
    siret = names.siret(random.Random(3))
    changed = siret[:5] + str((int(siret[5]) + 1) % 10) + siret[6:]
    assert names.luhn_valid(siret) and not names.luhn_valid(changed)


@pytest.mark.parametrize(
    ("departement", "prefix"),
    [("35", "02 61 91"), ("94", "01 99 00"), ("13", "04 65 71"), ("33", "05 36 49")],
)
def test_phone_numbers_come_from_the_fiction_range_of_the_zone(departement: str, prefix: str):
    number = names.phone(random.Random(1), departement)
    assert re.fullmatch(re.escape(prefix) + r" \d\d \d\d", number)


def test_slug_is_ascii_for_mail_addresses():
    assert names.slug("Centre hospitalier du Kremlin-Bicêtre") == "centre-hospitalier-du-kremlin-bicetre"
