"""The region of a département, for the ROR's source-region tag (meta.tag codeRegion).

Codes are INSEE's region codes (the regions of 2016), which the NOS nomenclature TRE_R30-RegionOM
uses; source: INSEE, Code officiel géographique. A ROR consumer's partial synchronisation selects
entries by this tag (`_tag=<TRE_R30>|53` for Brittany).
"""

from __future__ import annotations

R30_REGION = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"

_REGIONS = {
    "84": "01 03 07 15 26 38 42 43 63 69 73 74",  # Auvergne-Rhône-Alpes
    "27": "21 25 39 58 70 71 89 90",  # Bourgogne-Franche-Comté
    "53": "22 29 35 56",  # Bretagne
    "24": "18 28 36 37 41 45",  # Centre-Val de Loire
    "94": "2A 2B",  # Corse
    "44": "08 10 51 52 54 55 57 67 68 88",  # Grand Est
    "32": "02 59 60 62 80",  # Hauts-de-France
    "11": "75 77 78 91 92 93 94 95",  # Île-de-France
    "28": "14 27 50 61 76",  # Normandie
    "75": "16 17 19 23 24 33 40 47 64 79 86 87",  # Nouvelle-Aquitaine
    "76": "09 11 12 30 31 32 34 46 48 65 66 81 82",  # Occitanie
    "52": "44 49 53 72 85",  # Pays de la Loire
    "93": "04 05 06 13 83 84",  # Provence-Alpes-Côte d'Azur
    "01": "971",  # Guadeloupe
    "02": "972",  # Martinique
    "03": "973",  # Guyane
    "04": "974",  # La Réunion
    "06": "976",  # Mayotte
}
REGION_OF_DEPARTEMENT = {dep: region for region, deps in _REGIONS.items() for dep in deps.split()}


def region_tag(departement: str) -> dict[str, str]:
    """The meta.tag coding of the département's region; KeyError for an unknown département."""
    return {"system": R30_REGION, "code": REGION_OF_DEPARTEMENT[departement]}
