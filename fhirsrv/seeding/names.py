"""Invented but well-formed contact data: person names, streets, phone numbers, identifiers.

Nothing here belongs to a real person: names are random pairs from common French first and last
names, phone numbers come from the ranges ARCEP reserves for fiction, e-mail addresses are under
example.org, and FINESS / SIRET numbers are random with valid check digits.
"""

from __future__ import annotations

import random
import re
import unicodedata

from fhirsrv.seeding.model import Person

GIVEN_NAMES = (
    "Anne", "Bernard", "Camille", "Claire", "Denis", "Élise", "Émilie", "Fabien", "Gaëlle", "Hélène",
    "Hervé", "Isabelle", "Jacques", "Julie", "Karine", "Laurent", "Léa", "Loïc", "Maëlle", "Marc",
    "Marie", "Mathieu", "Nathalie", "Nicolas", "Olivier", "Pascale", "Patrick", "Pauline", "Rozenn",
    "Sandrine", "Sébastien", "Solenn", "Sophie", "Stéphane", "Sylvie", "Thomas", "Valérie", "Yann",
    "Yannick", "Gwenaëlle", "Erwan", "Nolwenn", "Ronan", "Katell", "Tristan", "Morgane",
)  # fmt: skip
FAMILY_NAMES = (
    "Bernard", "Bihan", "Blanchard", "Bouvier", "Caradec", "Carré", "Chauvin", "Colin", "Corre",
    "Daniel", "David", "Denis", "Diraison", "Fleury", "Gallou", "Garnier", "Gauthier", "Guégan",
    "Guillou", "Hamon", "Hervé", "Jaouen", "Jégou", "Kerboriou", "Lambert", "Le Bras", "Le Floch",
    "Le Gall", "Le Goff", "Le Roux", "Lemaire", "Madec", "Marchand", "Martin", "Mercier", "Morvan",
    "Nédélec", "Olivier", "Perrin", "Picard", "Quéré", "Renaud", "Riou", "Roussel", "Salaün",
    "Tanguy", "Thomas", "Vasseur",
)  # fmt: skip
STREET_TYPES = ("rue", "rue", "avenue", "boulevard", "place", "allée", "chemin", "impasse")
STREET_NAMES = (
    "de la Gare", "de l'Église", "du Général de Gaulle", "Jean Jaurès", "Pasteur", "Victor Hugo",
    "de la République", "des Écoles", "du Port", "de la Mairie", "des Tilleuls", "des Chênes",
    "Anatole Le Braz", "Saint-Michel", "de la Libération", "du Stade", "des Acacias",
    "de Verdun", "Louise Michel", "Marie Curie", "de la Fontaine", "du Moulin", "de l'Hôpital",
)  # fmt: skip

# ARCEP numbers reserved for fiction (films, books, examples), one block per geographic zone.
FICTION_RANGES = {"1": "01 99 00", "2": "02 61 91", "3": "03 53 01", "4": "04 65 71", "5": "05 36 49"}
_ZONE_1 = {"75", "77", "78", "91", "92", "93", "94", "95"}
_ZONE_2 = {
    "14", "18", "22", "27", "28", "29", "35", "36", "37", "41", "44", "45", "49", "50", "53", "56",
    "61", "72", "76", "85", "971", "972", "973", "974", "976",
}  # fmt: skip
_ZONE_3 = {
    "02", "08", "10", "21", "25", "39", "51", "52", "54", "55", "57", "58", "59", "60", "62", "67",
    "68", "70", "71", "80", "88", "89", "90",
}  # fmt: skip
_ZONE_4 = {
    "01", "03", "04", "05", "06", "07", "13", "15", "2A", "2B", "26", "30", "38", "42", "43", "48",
    "63", "69", "73", "74", "83", "84",
}  # fmt: skip


def phone_zone(departement: str) -> str:
    for zone, members in (("1", _ZONE_1), ("2", _ZONE_2), ("3", _ZONE_3), ("4", _ZONE_4)):
        if departement in members:
            return zone
    return "5"


def phone(rng: random.Random, departement: str) -> str:
    """A fiction-range number of the département's zone, e.g. "02 61 91 04 27"."""
    return f"{FICTION_RANGES[phone_zone(departement)]} {rng.randrange(100):02d} {rng.randrange(100):02d}"


def person(rng: random.Random, doctor_share: float = 0.0) -> Person:
    prefix = "Dr" if rng.random() < doctor_share else None
    return Person(given=rng.choice(GIVEN_NAMES), family=rng.choice(FAMILY_NAMES), prefix=prefix)


def street(rng: random.Random) -> str:
    return f"{rng.randint(1, 120)} {rng.choice(STREET_TYPES)} {rng.choice(STREET_NAMES)}"


def slug(text: str, limit: int = 40) -> str:
    """ASCII, lowercase, hyphens: for e-mail local parts and domains."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")


def luhn_check_digit(digits: str) -> str:
    """The digit that makes `digits + it` pass the Luhn test (FINESS and SIRET keys use Luhn)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def finess(rng: random.Random, departement: str) -> str:
    """A 9-character FINESS number: département (2 chars), 6 random digits, Luhn key.

    Corsica keeps its letters (2A, 2B) as FINESS does; overseas départements use 97 + a digit.
    The key is computed over the digits with Corsica's letters read as 0 (not checkable otherwise)."""
    prefix = departement[:2] if len(departement) <= 2 else departement[:3]
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(8 - len(prefix)))
    return body + luhn_check_digit(body.replace("A", "0").replace("B", "0"))


def siret(rng: random.Random) -> str:
    """A 14-digit SIRET whose SIREN (first 9) and whole number both pass the Luhn test."""
    siren_body = str(rng.randint(1, 9)) + "".join(str(rng.randrange(10)) for _ in range(7))
    siren = siren_body + luhn_check_digit(siren_body)
    nic_body = f"{rng.randrange(1000):04d}"
    return siren + nic_body + luhn_check_digit(siren + nic_body)
