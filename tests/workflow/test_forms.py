"""The $apply form (forms.py) and the $submit grid (grid.py).

Each case changes one thing in a complete application and expects exactly the error(s) it
causes, at the FHIRPath of the changed element: a second, spurious error is a bug too (the
applicant would be told to fix something that is right).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.workflow.forms import (
    DEFAULT_CATEGORY_PATH,
    DEFAULT_STRUCTURE_TYPE_PATH,
    INVALID_EMAIL,
    NOT_REPEATABLE,
    REQUIRED,
    Application,
    FieldError,
    load_codes,
    luhn_valid,
    parameter_expression,
    parse_application,
    part_expression,
    siret_problem,
)
from fhirsrv.workflow.grid import CRITERIA, check_grid, months_before

TODAY = date(2025, 6, 15)

STRUCTURE = parameter_expression("structure")
REFERENT = parameter_expression("referent")


def service_at(k: int) -> str:
    return parameter_expression("service", k)


def criterion_at(k: int) -> str:
    return parameter_expression("criterion", k)


def _string(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "valueString": value}


def _code(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "valueCode": value}


def _bool(name: str, value: bool) -> dict[str, Any]:
    return {"name": name, "valueBoolean": value}


def _criterion(code: str, *parts: dict[str, Any], met: bool = True) -> dict[str, Any]:
    return {"name": "criterion", "part": [_code("code", code), _bool("met", met), *parts]}


# The criterion parameters in the order of CRITERIA, so criterion_at(k) is the k-th code.
CRITERION_ANSWERS: list[dict[str, Any]] = [
    _criterion("contact-details"),
    _criterion("named-referent"),
    _criterion("oncology-link", _string("evidence", "File active 2024 : 312 patients")),
    _criterion(
        "statutes", _string("evidence", "doc-statuts-2025.pdf"), {"name": "date", "valueDate": "2025-05-02"}
    ),
    _criterion(
        "health-project",
        _string("evidence", "https://example.org/projet-de-sante.pdf"),
        _bool("mentionsOncology", True),
        _bool("mentionsCoordinatedCare", True),
        _bool("mentionsReferringDoctor", True),
    ),
    _criterion("recruitment", _bool("interview", True), _bool("diploma", True)),
    _criterion("charter", _string("evidence", "charte-signee.pdf")),
    _criterion("terms-of-use", _string("evidence", "cgu-signees.pdf")),
]


def complete_body() -> dict[str, Any]:
    """A complete application: every optional part present, so removing any one is meaningful."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "structure",
                "part": [
                    _string("name", "  Association Vivre Après  "),
                    _string("siret", "732 829 320 00074"),
                    _string("finess", "350000014"),
                    _code("structureType", "association"),
                    _string("addressLine", "12 rue de Brest"),
                    _string("postalCode", "35000"),
                    _string("city", "Rennes"),
                    _string("commune", "35238"),
                    _string("phone", "02 99 00 00 00"),
                    _string("email", "contact@vivre-apres.fr"),
                ],
            },
            {
                "name": "referent",
                "part": [
                    _string("given", "Anne"),
                    _string("family", "Le Goff"),
                    _string("email", "anne.legoff@vivre-apres.fr"),
                    _string("phone", "+33 6 00 00 00 00"),
                ],
            },
            {
                "name": "service",
                "part": [
                    _string("name", "Sophrologie"),
                    _code("category", "bien-etre-image-de-soi"),
                    _code("category", "sophrologie"),
                    _string("description", "Séances collectives"),
                ],
            },
            {
                "name": "service",
                "part": [
                    _string("name", "Groupe de parole"),
                    _code("category", "psychologique-groupe-de-parole"),
                ],
            },
            *copy.deepcopy(CRITERION_ANSWERS),
        ],
    }


def _parameter(body: dict[str, Any], name: str, k: int = 0) -> dict[str, Any]:
    return [p for p in body["parameter"] if p["name"] == name][k]


def without(name: str, k: int, *parts: str) -> Callable[[dict[str, Any]], None]:
    """Edit: remove every occurrence of `parts` from the k-th parameter `name`."""

    def edit(body: dict[str, Any]) -> None:
        parameter = _parameter(body, name, k)
        parameter["part"] = [p for p in parameter["part"] if p["name"] not in parts]

    return edit


def with_part(name: str, k: int, part: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Edit: replace the part of that name in the k-th parameter `name` (or add it)."""

    def edit(body: dict[str, Any]) -> None:
        parameter = _parameter(body, name, k)
        parameter["part"] = [p for p in parameter["part"] if p["name"] != part["name"]] + [part]

    return edit


def without_parameter(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        body["parameter"] = [p for p in body["parameter"] if p["name"] != name]

    return edit


def parse(
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Application | None, list[FieldError]]:
    body = complete_body()
    if edit:
        edit(body)
    return parse_application(body)


# --------------------------------------------------------------------------------------------
# The complete application
# --------------------------------------------------------------------------------------------


def test_a_complete_application_parses_into_clean_values() -> None:
    application, errors = parse()

    assert errors == []
    assert application is not None
    structure = application.structure
    assert structure.name == "Association Vivre Après"  # stripped
    assert structure.siret == "73282932000074"  # spaces removed
    assert structure.finess == "350000014"
    assert structure.structure_type == "association"
    assert (structure.postal_code, structure.city, structure.commune) == ("35000", "Rennes", "35238")
    assert structure.email == "contact@vivre-apres.fr"
    assert application.referent.family == "Le Goff"
    assert [s.name for s in application.services] == ["Sophrologie", "Groupe de parole"]
    assert application.services[0].categories == ("bien-etre-image-de-soi", "sophrologie")
    assert application.criteria == tuple(CRITERION_ANSWERS)


def test_the_application_is_frozen_and_independent_of_the_body() -> None:
    body = complete_body()
    application, _ = parse_application(body)
    assert application is not None
    _parameter(body, "criterion")["part"].append(_bool("met", False))

    assert application.criteria == tuple(CRITERION_ANSWERS)
    with pytest.raises(AttributeError):
        application.structure.name = "Autre"  # type: ignore[misc]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(without("structure", 0, "siret"), id="finess alone"),
        pytest.param(without("structure", 0, "finess"), id="siret alone"),
        pytest.param(without("structure", 0, "phone"), id="email alone"),
        pytest.param(without("structure", 0, "email"), id="phone alone"),
        pytest.param(without("structure", 0, "addressLine", "commune"), id="no address line nor commune"),
        pytest.param(without("referent", 0, "phone"), id="referent without phone"),
        pytest.param(without("service", 0, "description"), id="service without description"),
        pytest.param(without_parameter("criterion"), id="no criterion at apply"),
        pytest.param(with_part("criterion", 0, _bool("met", False)), id="unmet criterion at apply"),
        pytest.param(with_part("structure", 0, _string("commune", "2A004")), id="Corsican commune"),
        pytest.param(with_part("structure", 0, _string("finess", "2a 0000 001")), id="Corsican FINESS"),
        pytest.param(
            with_part("structure", 0, _string("siret", "35600000000048")), id="La Poste head office"
        ),
        pytest.param(with_part("structure", 0, _string("siret", "35600000010000")), id="La Poste office key"),
    ],
)
def test_optional_parts_may_be_left_out(edit: Callable[[dict[str, Any]], None]) -> None:
    application, errors = parse(edit)

    assert errors == []
    assert application is not None


def test_identifiers_are_normalised_without_spaces() -> None:
    application, errors = parse(
        lambda body: (
            with_part("structure", 0, _string("finess", " 2a 0000 001 "))(body),
            with_part("structure", 0, _string("postalCode", "35 000"))(body),
        )
    )

    assert errors == []
    assert application is not None
    assert (application.structure.finess, application.structure.postal_code) == ("2A0000001", "35000")


# --------------------------------------------------------------------------------------------
# One error per missing or wrong element
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expression", "message"),
    [
        pytest.param(
            without("structure", 0, "name"), part_expression(STRUCTURE, "name"), REQUIRED, id="structure name"
        ),
        pytest.param(
            without("structure", 0, "structureType"),
            part_expression(STRUCTURE, "structureType"),
            REQUIRED,
            id="structure type",
        ),
        pytest.param(
            without("structure", 0, "postalCode"),
            part_expression(STRUCTURE, "postalCode"),
            REQUIRED,
            id="postal code",
        ),
        pytest.param(
            without("structure", 0, "city"), part_expression(STRUCTURE, "city"), REQUIRED, id="city"
        ),
        pytest.param(
            without("structure", 0, "siret", "finess"),
            STRUCTURE,
            "Au moins un identifiant est obligatoire : SIRET ou FINESS",
            id="neither siret nor finess",
        ),
        pytest.param(
            without("structure", 0, "phone", "email"),
            STRUCTURE,
            "Au moins un moyen de contact est obligatoire : téléphone ou adresse électronique",
            id="neither phone nor email",
        ),
        pytest.param(
            without("referent", 0, "given"), part_expression(REFERENT, "given"), REQUIRED, id="given"
        ),
        pytest.param(
            without("referent", 0, "family"), part_expression(REFERENT, "family"), REQUIRED, id="family"
        ),
        pytest.param(
            without("referent", 0, "email"), part_expression(REFERENT, "email"), REQUIRED, id="referent email"
        ),
        pytest.param(
            without("service", 1, "name"), part_expression(service_at(1), "name"), REQUIRED, id="service name"
        ),
        pytest.param(
            without("service", 1, "category"),
            part_expression(service_at(1), "category"),
            REQUIRED,
            id="service category",
        ),
        pytest.param(without_parameter("structure"), STRUCTURE, REQUIRED, id="structure parameter"),
        pytest.param(without_parameter("referent"), REFERENT, REQUIRED, id="referent parameter"),
        pytest.param(
            without_parameter("service"), parameter_expression("service"), REQUIRED, id="service parameter"
        ),
        pytest.param(
            with_part("structure", 0, _string("city", "   ")),
            part_expression(STRUCTURE, "city"),
            REQUIRED,
            id="blank city",
        ),
        pytest.param(
            with_part("service", 0, _code("category", " ")),
            part_expression(service_at(0), "category", 0),
            REQUIRED,
            id="blank category",
        ),
    ],
)
def test_each_required_element_removed_gives_one_error(
    edit: Callable[[dict[str, Any]], None], expression: str, message: str
) -> None:
    application, errors = parse(edit)

    assert application is None
    assert errors == [FieldError(expression, message)]


@pytest.mark.parametrize(
    ("edit", "expression", "message"),
    [
        pytest.param(
            with_part("structure", 0, _string("email", "contact@")),
            part_expression(STRUCTURE, "email"),
            INVALID_EMAIL,
            id="structure email",
        ),
        pytest.param(
            with_part("referent", 0, _string("email", "anne.legoff.vivre-apres.fr")),
            part_expression(REFERENT, "email"),
            INVALID_EMAIL,
            id="referent email",
        ),
        pytest.param(
            with_part("structure", 0, _string("siret", "73282932000075")),
            part_expression(STRUCTURE, "siret"),
            "SIRET invalide : clé de contrôle erronée (vérifiez la saisie)",
            id="siret Luhn",
        ),
        pytest.param(
            with_part("structure", 0, _string("siret", "37328293200007")),
            part_expression(STRUCTURE, "siret"),
            "SIRET invalide : clé de contrôle erronée (vérifiez la saisie)",
            id="siret digits swapped",
        ),
        pytest.param(
            with_part("structure", 0, _string("siret", "7328293200007")),
            part_expression(STRUCTURE, "siret"),
            "SIRET invalide : 14 chiffres attendus",
            id="siret 13 digits",
        ),
        pytest.param(
            with_part("structure", 0, _string("siret", "7328293200007A")),
            part_expression(STRUCTURE, "siret"),
            "SIRET invalide : 14 chiffres attendus",
            id="siret with a letter",
        ),
        pytest.param(
            with_part("structure", 0, _string("finess", "35000001")),
            part_expression(STRUCTURE, "finess"),
            "FINESS invalide : 9 caractères attendus (chiffres, ou 2A/2B pour la Corse)",
            id="finess 8 characters",
        ),
        pytest.param(
            with_part("structure", 0, _string("postalCode", "3500")),
            part_expression(STRUCTURE, "postalCode"),
            "Code postal invalide : 5 chiffres attendus",
            id="postal code 4 digits",
        ),
        pytest.param(
            with_part("structure", 0, _string("postalCode", "35OOO")),
            part_expression(STRUCTURE, "postalCode"),
            "Code postal invalide : 5 chiffres attendus",
            id="postal code with letters",
        ),
        pytest.param(
            with_part("structure", 0, _string("commune", "3523")),
            part_expression(STRUCTURE, "commune"),
            "Code commune INSEE invalide : 5 caractères attendus",
            id="commune",
        ),
        pytest.param(
            with_part("structure", 0, _string("phone", "appelez-nous")),
            part_expression(STRUCTURE, "phone"),
            "Numéro de téléphone invalide",
            id="phone",
        ),
        pytest.param(
            with_part("structure", 0, _code("structureType", "clinique")),
            part_expression(STRUCTURE, "structureType"),
            "Type de structure inconnu ou non admis dans l'annuaire : « clinique »",
            id="unknown structure type",
        ),
        pytest.param(
            with_part("structure", 0, _code("structureType", "professionnel-liberal")),
            part_expression(STRUCTURE, "structureType"),
            "Type de structure inconnu ou non admis dans l'annuaire : « professionnel-liberal »",
            id="inactive structure type (individual practitioner)",
        ),
        pytest.param(
            lambda body: _parameter(body, "service", 0)["part"].insert(2, _code("category", "reiki")),
            part_expression(service_at(0), "category", 1),
            "Catégorie inconnue : « reiki » (CodeSystem sos-category)",
            id="unknown category code, second of three",
        ),
        pytest.param(
            with_part("referent", 0, _string("emial", "anne@vivre-apres.fr")),
            part_expression(REFERENT, "emial"),
            "Élément inconnu : « emial »",
            id="unknown part name",
        ),
        pytest.param(
            lambda body: body["parameter"].append({"name": "structur", "part": []}),
            parameter_expression("structur"),
            "Paramètre inconnu : « structur »",
            id="unknown parameter name",
        ),
        pytest.param(
            lambda body: body["parameter"].append({"part": []}),
            "Parameters.parameter[12]",
            "Paramètre sans nom",
            id="parameter without a name",
        ),
        pytest.param(
            lambda body: body.update(contained=[]),
            "Parameters.contained",
            "Élément inconnu : « contained »",
            id="unknown top-level element",
        ),
        pytest.param(
            with_part("structure", 0, _code("name", "Vivre Après")),
            part_expression(STRUCTURE, "name"),
            "Une valeur de type valueString est attendue",
            id="wrong value type",
        ),
        pytest.param(
            with_part("structure", 0, {"name": "city", "valueString": "Rennes", "part": []}),
            part_expression(STRUCTURE, "city"),
            "Élément inattendu dans cette partie : « part »",
            id="part with nested parts",
        ),
        pytest.param(
            lambda body: _parameter(body, "structure")["part"].append(_string("name", "Autre nom")),
            part_expression(STRUCTURE, "name", 1),
            NOT_REPEATABLE,
            id="part given twice",
        ),
        pytest.param(
            lambda body: body["parameter"].append(copy.deepcopy(_parameter(body, "referent"))),
            parameter_expression("referent", 1),
            NOT_REPEATABLE,
            id="referent given twice",
        ),
        pytest.param(
            lambda body: _parameter(body, "referent").update(valueString="Anne Le Goff"),
            REFERENT,
            "Ce paramètre se compose d'éléments « part », pas d'une valeur",
            id="parameter with a value",
        ),
        pytest.param(
            with_part("structure", 0, {"name": "email", "valueString": 42}),
            part_expression(STRUCTURE, "email"),
            "Texte attendu",
            id="number as string",
        ),
    ],
)
def test_each_invalid_element_gives_its_error(
    edit: Callable[[dict[str, Any]], None], expression: str, message: str
) -> None:
    application, errors = parse(edit)

    assert application is None
    assert errors == [FieldError(expression, message)]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="a list"),
        pytest.param("Parameters", id="a string"),
        pytest.param(None, id="nothing"),
        pytest.param({"resourceType": "Organization", "name": "Vivre Après"}, id="another resource"),
        pytest.param({"parameter": []}, id="no resourceType"),
        pytest.param({"resourceType": "Parameters", "parameter": {}}, id="parameter not a list"),
    ],
)
def test_a_body_that_is_not_parameters_gives_one_error(body: Any) -> None:
    application, errors = parse_application(body)

    assert application is None
    assert len(errors) == 1
    assert errors[0].expression.startswith("Parameters")


def test_all_errors_are_reported_at_once() -> None:
    """The applicant fixes the form in one round: independent errors are not hidden."""

    def edit(body: dict[str, Any]) -> None:
        without("structure", 0, "siret", "finess")(body)
        with_part("structure", 0, _string("postalCode", "3500"))(body)
        with_part("referent", 0, _string("email", "anne@"))(body)
        without("service", 1, "name")(body)

    _, errors = parse(edit)

    assert sorted(e.expression for e in errors) == sorted(
        [
            STRUCTURE,
            part_expression(STRUCTURE, "postalCode"),
            part_expression(REFERENT, "email"),
            part_expression(service_at(1), "name"),
        ]
    )


@pytest.mark.parametrize(
    ("part", "message"),
    [
        pytest.param(_code("code", "cgu"), "Critère inconnu : « cgu »", id="unknown criterion"),
        pytest.param(
            {"name": "met", "valueString": "true"},
            "Critère « Coordonnées de la structure » : Une valeur de type valueBoolean est attendue",
            id="met as a string",
        ),
        pytest.param(
            {"name": "date", "valueDate": "2025-05-01"},
            "Critère « Coordonnées de la structure » : Élément sans objet pour ce critère",
            id="date on another criterion",
        ),
        pytest.param(
            _string("evidnce", "x.pdf"),
            "Critère « Coordonnées de la structure » : Élément inconnu : « evidnce »",
            id="unknown part",
        ),
    ],
)
def test_a_malformed_criterion_is_rejected_at_apply(part: dict[str, Any], message: str) -> None:
    _, errors = parse(with_part("criterion", 0, part))

    assert errors == [FieldError(part_expression(criterion_at(0), part["name"]), message)]


def test_an_expression_quotes_the_name_it_contains() -> None:
    _, errors = parse(with_part("referent", 0, _string("o'brien", "x")))

    assert errors == [FieldError(part_expression(REFERENT, "o'brien"), "Élément inconnu : « o'brien »")]
    assert errors[0].expression.endswith("part.where(name='o\\'brien')")


# --------------------------------------------------------------------------------------------
# Identifiers and code systems
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("siret", ["73282932000074", "35600000000048", "35600000010000"])
def test_real_sirets_pass(siret: str) -> None:
    assert siret_problem(siret) is None


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("732829320", True),
        ("73282932000074", True),
        ("732829321", False),
        ("73282932000047", False),
        ("0", True),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_codes_are_loaded_from_the_shipped_terminology() -> None:
    categories = load_codes(DEFAULT_CATEGORY_PATH)
    structure_types = load_codes(DEFAULT_STRUCTURE_TYPE_PATH)

    assert {"douleur", "douleur-equipe-mobile", "sophrologie"} <= categories  # both levels
    assert "association" in structure_types
    assert "professionnel-liberal" not in structure_types  # inactive: structures only
    assert load_codes(str(DEFAULT_CATEGORY_PATH)) is categories  # read once


def test_codes_can_come_from_another_file(tmp_path: Path) -> None:
    code_system = {
        "resourceType": "CodeSystem",
        "concept": [
            {
                "code": "reiki",
                "concept": [
                    {"code": "reiki-seance"},
                    {"code": "reiki-ancien", "property": [{"code": "status", "valueCode": "retired"}]},
                ],
            }
        ],
    }
    path = tmp_path / "CodeSystem-test.json"
    path.write_text(json.dumps(code_system), encoding="utf-8")

    codes = load_codes(path)
    assert codes == {"reiki", "reiki-seance"}

    def reiki_only(body: dict[str, Any]) -> None:
        without("service", 0, "category")(body)
        without("service", 1, "category")(body)
        with_part("service", 0, _code("category", "reiki-seance"))(body)
        with_part("service", 1, _code("category", "sophrologie"))(body)

    application, errors = parse_application(_edited(reiki_only), category_codes=codes)
    assert application is None
    assert errors == [
        FieldError(
            part_expression(service_at(1), "category", 0),
            "Catégorie inconnue : « sophrologie » (CodeSystem sos-category)",
        )
    ]


def _edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = complete_body()
    edit(body)
    return body


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def answers(edit: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    given = copy.deepcopy(CRITERION_ANSWERS)
    if edit:
        edit(given)
    return given


def answer_index(code: str) -> int:
    return list(CRITERIA).index(code)


def set_part(code: str, part: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    def edit(given: list[dict[str, Any]]) -> None:
        answer = given[answer_index(code)]
        answer["part"] = [p for p in answer["part"] if p["name"] != part["name"]] + [part]

    return edit


def drop_part(code: str, name: str) -> Callable[[list[dict[str, Any]]], None]:
    def edit(given: list[dict[str, Any]]) -> None:
        answer = given[answer_index(code)]
        answer["part"] = [p for p in answer["part"] if p["name"] != name]

    return edit


def at(code: str, part: str) -> str:
    return part_expression(criterion_at(answer_index(code)), part)


def label(code: str) -> str:
    return CRITERIA[code].label


def test_the_fixture_lists_the_criteria_in_grid_order() -> None:
    assert [a["part"][0]["valueCode"] for a in CRITERION_ANSWERS] == list(CRITERIA)
    assert len(CRITERIA) == 8


def test_a_complete_grid_passes() -> None:
    assert check_grid(answers(), TODAY) == []


def test_the_grid_passes_whatever_the_order_of_answers() -> None:
    assert check_grid(list(reversed(answers())), TODAY) == []


@pytest.mark.parametrize("code", list(CRITERIA))
def test_a_missing_criterion_is_named_at_the_parameters(code: str) -> None:
    given = [a for a in answers() if a["part"][0]["valueCode"] != code]

    assert check_grid(given, TODAY) == [FieldError("Parameters", f"Critère manquant : « {label(code)} »")]


@pytest.mark.parametrize("code", list(CRITERIA))
def test_a_criterion_declared_unmet_is_named_at_met(code: str) -> None:
    errors = check_grid(answers(set_part(code, _bool("met", False))), TODAY)

    assert errors == [FieldError(at(code, "met"), f"Critère « {label(code)} » : critère déclaré non rempli")]


@pytest.mark.parametrize("code", ["statutes", "health-project", "charter", "terms-of-use"])
def test_a_transmitted_document_needs_evidence(code: str) -> None:
    errors = check_grid(answers(drop_part(code, "evidence")), TODAY)

    assert errors == [
        FieldError(at(code, "evidence"), f"Critère « {label(code)} » : document justificatif manquant")
    ]


@pytest.mark.parametrize("code", ["contact-details", "named-referent", "oncology-link", "recruitment"])
def test_other_criteria_need_no_evidence(code: str) -> None:
    assert check_grid(answers(drop_part(code, "evidence")), TODAY) == []


@pytest.mark.parametrize(
    ("document_date", "reason"),
    [
        pytest.param(
            "2025-02-15",
            "document daté du 15/02/2025 : il doit dater de moins de 3 mois (postérieur au 15/03/2025)",
            id="four months old",
        ),
        pytest.param(
            "2025-03-15",
            "document daté du 15/03/2025 : il doit dater de moins de 3 mois (postérieur au 15/03/2025)",
            id="exactly three months old",
        ),
        pytest.param(
            "2025-06-16", "document daté du 16/06/2025, postérieur à la date du dépôt", id="in the future"
        ),
        pytest.param(None, "date du document manquante", id="no date"),
    ],
)
def test_statutes_must_be_less_than_three_months_old(document_date: str | None, reason: str) -> None:
    edit = (
        drop_part("statutes", "date")
        if document_date is None
        else set_part("statutes", {"name": "date", "valueDate": document_date})
    )

    errors = check_grid(answers(edit), TODAY)

    assert errors == [FieldError(at("statutes", "date"), f"Critère « {label('statutes')} » : {reason}")]


@pytest.mark.parametrize("document_date", ["2025-03-16", "2025-06-15"])
def test_statutes_within_three_months_pass(document_date: str) -> None:
    edit = set_part("statutes", {"name": "date", "valueDate": document_date})

    assert check_grid(answers(edit), TODAY) == []


@pytest.mark.parametrize(
    ("code", "part", "wording"),
    [
        ("health-project", "mentionsOncology", "présence de la cancérologie dans le projet"),
        ("health-project", "mentionsCoordinatedCare", "présence d'une prise en charge coordonnée"),
        ("health-project", "mentionsReferringDoctor", "liens avec le médecin référent"),
        ("recruitment", "interview", "réalisation d'un entretien avec le/la professionnel(le)"),
        ("recruitment", "diploma", "diplôme permettant d'exercer en cancérologie"),
    ],
)
@pytest.mark.parametrize("how", ["missing", "false"])
def test_each_indicator_is_required(code: str, part: str, wording: str, how: str) -> None:
    edit = drop_part(code, part) if how == "missing" else set_part(code, _bool(part, False))

    errors = check_grid(answers(edit), TODAY)

    assert errors == [
        FieldError(at(code, part), f"Critère « {label(code)} » : indicateur manquant : {wording}")
    ]


def test_a_criterion_answered_twice_is_reported_once() -> None:
    given = answers()
    given.append(copy.deepcopy(given[answer_index("charter")]))

    assert check_grid(given, TODAY) == [
        FieldError(
            part_expression(criterion_at(8), "code"),
            f"Critère « {label('charter')} » renseigné plusieurs fois",
        )
    ]


def test_a_malformed_part_is_not_also_reported_as_unmet() -> None:
    """`met` sent as a string: one error saying so, not also « critère déclaré non rempli »."""
    errors = check_grid(answers(set_part("charter", {"name": "met", "valueString": "oui"})), TODAY)

    assert errors == [
        FieldError(
            at("charter", "met"),
            f"Critère « {label('charter')} » : Une valeur de type valueBoolean est attendue",
        )
    ]


def test_a_statutes_date_not_given_to_the_day_is_one_error() -> None:
    errors = check_grid(answers(set_part("statutes", {"name": "date", "valueDate": "2025-05"})), TODAY)

    assert errors == [
        FieldError(
            at("statutes", "date"),
            f"Critère « {label('statutes')} » : Date invalide (format attendu : AAAA-MM-JJ)",
        )
    ]


def test_an_answer_without_code_counts_as_missing() -> None:
    errors = check_grid(answers(drop_part("charter", "code")), TODAY)

    assert errors == [
        FieldError(at("charter", "code"), REQUIRED),
        FieldError("Parameters", f"Critère manquant : « {label('charter')} »"),
    ]


def test_every_unmet_criterion_is_reported_at_once() -> None:
    def edit(given: list[dict[str, Any]]) -> None:
        set_part("oncology-link", _bool("met", False))(given)
        drop_part("terms-of-use", "evidence")(given)
        set_part("recruitment", _bool("diploma", False))(given)

    assert [e.expression for e in check_grid(answers(edit), TODAY)] == [
        at("oncology-link", "met"),
        at("recruitment", "diploma"),
        at("terms-of-use", "evidence"),
    ]


def test_the_criteria_parsed_at_apply_pass_the_grid_at_submit() -> None:
    application, _ = parse()
    assert application is not None

    assert check_grid(list(application.criteria), TODAY) == []


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 6, 15), date(2025, 3, 15)),
        (date(2024, 5, 31), date(2024, 2, 29)),
        (date(2025, 2, 28), date(2024, 11, 28)),
        (date(2025, 1, 31), date(2024, 10, 31)),
    ],
)
def test_months_before(day: date, expected: date) -> None:
    assert months_before(day, 3) == expected


def test_a_body_with_thousands_of_categories_or_parameters_is_refused_in_one_error() -> None:
    """An anonymous body of 200,000 unknown categories took seconds and answered one error per
    category (42 MB): it is now refused whole, quickly, with one error naming the limit."""

    def many_categories(body: dict[str, Any]) -> None:
        service = next(p for p in body["parameter"] if p["name"] == "service")
        service["part"] += [{"name": "category", "valueCode": f"x{i}"} for i in range(20_000)]

    application, errors = parse(many_categories)
    assert application is None
    assert len(errors) == 1 and "au plus" in errors[0].message
    assert errors[0].expression.startswith("Parameters.parameter.where(name='service')")

    def many_services(body: dict[str, Any]) -> None:
        service = next(p for p in body["parameter"] if p["name"] == "service")
        body["parameter"] += [service] * 5_000

    application, errors = parse(many_services)
    assert application is None and len(errors) == 1 and "au plus" in errors[0].message
