"""The criteria grid an application must pass at `Organization/$submit` (source 004, annex 3).

The grid is cumulative: a structure is listed only if every criterion holds, so check_grid
reports every unmet criterion at once rather than stopping at the first one (the applicant
fixes the whole file in one round).

A criterion answer is one `criterion` parameter of the application (see forms.py for the body):

    ``code``      valueCode     required; one of CRITERIA
    ``met``       valueBoolean  required; the applicant's statement that the criterion holds
    ``evidence``  valueString   the document transmitted (reference or URL); required for
                                statutes, health-project, charter and terms-of-use, which the
                                annex asks to *transmit*
    ``date``      valueDate     statutes only, required: the document's date (AAAA-MM-JJ)
    ``mentionsOncology``, ``mentionsCoordinatedCare``, ``mentionsReferringDoctor``
                  valueBoolean  health-project only; all three must be true
    ``interview``, ``diploma``
                  valueBoolean  recruitment only; both must be true

A part that belongs to another criterion (a ``date`` on the charter, say) is an error: it shows
the applicant mixed up two answers.

The statutes/SIREN document must be "de moins de 3 mois" on the day of submission: dated
strictly after the same day three calendar months earlier (clamped to the month's end), and
not after that day.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from marshmallow import ValidationError, validates_schema

from fhirsrv.workflow.forms import (
    Code,
    FhirDate,
    FieldError,
    LoadedParameter,
    PartsSchema,
    StrictBoolean,
    Text,
    load_parameter,
    parameter_expression,
    part_expression,
)

STATUTES_MAX_AGE_MONTHS = 3


@dataclass(frozen=True)
class Indicator:
    """A boolean part that must be true for its criterion to hold."""

    part: str
    wording: str  # French, completes « indicateur manquant : … »


@dataclass(frozen=True)
class Criterion:
    """One line of the grid: `label` and `rule` are shown to French users as written."""

    code: str
    label: str
    rule: str
    needs_evidence: bool = False
    dated: bool = False
    indicators: tuple[Indicator, ...] = ()

    @property
    def own_parts(self) -> frozenset[str]:
        """Parts only this kind of criterion may carry."""
        return frozenset({"date"} if self.dated else set()) | {i.part for i in self.indicators}


CRITERIA: dict[str, Criterion] = {
    criterion.code: criterion
    for criterion in (
        Criterion(
            "contact-details",
            "Coordonnées de la structure",
            "Transmission des coordonnées de la structure",
        ),
        Criterion(
            "named-referent",
            "Identification d'une personne référente au sein de la structure",
            "Transmission des nom, prénom, fonction et coordonnées de la personne référente",
        ),
        Criterion(
            "oncology-link",
            "Lien avec la cancérologie : accueil de personnes atteintes de cancer",
            "File active existante (nombre de patients vus dans l'année)",
        ),
        Criterion(
            "statutes",
            "Statuts de la structure (SIREN)",
            "Transmission des statuts de la structure, SIREN de moins de 3 mois",
            needs_evidence=True,
            dated=True,
        ),
        Criterion(
            "health-project",
            "Projet de santé de la structure",
            "Présentation du projet de santé, avec les 3 indicateurs cumulés : cancérologie, "
            "prise en charge coordonnée, liens avec le médecin référent",
            needs_evidence=True,
            indicators=(
                Indicator("mentionsOncology", "présence de la cancérologie dans le projet"),
                Indicator("mentionsCoordinatedCare", "présence d'une prise en charge coordonnée"),
                Indicator("mentionsReferringDoctor", "liens avec le médecin référent"),
            ),
        ),
        Criterion(
            "recruitment",
            "Recrutement des professionnels",
            "Transmission des critères de recrutement des professionnels pratiquant les séances/soins, "
            "dont un entretien et un diplôme permettant d'exercer en cancérologie",
            indicators=(
                Indicator("interview", "réalisation d'un entretien avec le/la professionnel(le)"),
                Indicator("diploma", "diplôme permettant d'exercer en cancérologie"),
            ),
        ),
        Criterion(
            "charter",
            "Signature de la charte d'engagement",
            "Transmission de la charte d'engagement signée",
            needs_evidence=True,
        ),
        Criterion(
            "terms-of-use",
            "Signature des conditions générales d'utilisation (CGU)",
            "Transmission du document CGU signé",
            needs_evidence=True,
        ),
    )
}


class CriterionSchema(PartsSchema):
    """The parts of one criterion answer; the grid's rules are applied by check_grid, not here,
    so that $apply can accept a draft (met false, no evidence yet) while rejecting a malformed one."""

    code = Code("criterion", required=True, unknown="Critère inconnu : « {code} »")
    met = StrictBoolean(required=True)
    evidence = Text()
    date = FhirDate()
    mentions_oncology = StrictBoolean(data_key="mentionsOncology")
    mentions_coordinated_care = StrictBoolean(data_key="mentionsCoordinatedCare")
    mentions_referring_doctor = StrictBoolean(data_key="mentionsReferringDoctor")
    interview = StrictBoolean()
    diploma = StrictBoolean()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("vocabularies", {"criterion": frozenset(CRITERIA)})
        super().__init__(**kwargs)

    @validates_schema(skip_on_field_errors=False)
    def _parts_belong_to_code(self, data: dict[str, Any], **kwargs: Any) -> None:
        criterion = CRITERIA.get(data.get("code", ""))
        if criterion is None:
            return
        every_own_part = frozenset().union(*(c.own_parts for c in CRITERIA.values()))
        misplaced = {
            self.fields[name].data_key or name: ["Élément sans objet pour ce critère"]
            for name in data
            if (self.fields[name].data_key or name) in every_own_part - criterion.own_parts
        }
        if misplaced:
            raise ValidationError(misplaced)


def load_answer(parameter: Any, expression: str) -> LoadedParameter:
    """One criterion answer read through CriterionSchema; once its code is known, every message
    names the criterion, so that the applicant knows which line of the grid is concerned."""
    loaded = load_parameter(parameter, CriterionSchema(), expression)
    criterion = CRITERIA.get(loaded.valid.get("code", ""))
    if criterion is None or not loaded.errors:
        return loaded
    named = tuple(
        FieldError(e.expression, f"Critère « {criterion.label} » : {e.message}") for e in loaded.errors
    )
    return replace(loaded, errors=named)


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier, clamped to the end of a shorter month."""
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def check_grid(answers: Sequence[Mapping[str, Any]], today: date) -> list[FieldError]:
    """Every reason the application does not pass the grid on `today`; empty when it passes.

    `answers` are the application's `criterion` parameters in their order in the body, so that
    answer k is ``Parameters.parameter.where(name='criterion')[k]``. A malformed answer gets its
    field errors; a grid rule is not also reported on a part that already has one.
    """
    errors: list[FieldError] = []
    answered: dict[str, tuple[str, LoadedParameter]] = {}
    for k, answer in enumerate(answers):
        at = parameter_expression("criterion", k)
        loaded = load_answer(answer, at)
        errors.extend(loaded.errors)
        code = loaded.valid.get("code")
        if code not in CRITERIA:
            continue
        if code in answered:
            errors.append(
                FieldError(
                    part_expression(at, "code"),
                    f"Critère « {CRITERIA[code].label} » renseigné plusieurs fois",
                )
            )
            continue
        answered[code] = (at, loaded)

    for code, criterion in CRITERIA.items():
        if code not in answered:
            errors.append(FieldError("Parameters", f"Critère manquant : « {criterion.label} »"))
            continue
        at, loaded = answered[code]
        errors.extend(
            FieldError(part_expression(at, part), f"Critère « {criterion.label} » : {message}")
            for part, message in _unmet(criterion, loaded.valid, today)
            if part not in loaded.flawed
        )
    return errors


def _unmet(criterion: Criterion, answer: Mapping[str, Any], today: date) -> list[tuple[str, str]]:
    """(part, French reason) for each rule of `criterion` that `answer` breaks."""
    reasons: list[tuple[str, str]] = []
    if answer.get("met") is False:
        reasons.append(("met", "critère déclaré non rempli"))
    if criterion.needs_evidence and not answer.get("evidence"):
        reasons.append(("evidence", "document justificatif manquant"))
    if criterion.dated:
        reasons.extend(_date_reasons(answer.get("date"), today))
    reasons.extend(
        (indicator.part, f"indicateur manquant : {indicator.wording}")
        for indicator in criterion.indicators
        if answer.get(indicator.part) is not True
    )
    return reasons


def _date_reasons(document_date: date | None, today: date) -> list[tuple[str, str]]:
    if document_date is None:
        return [("date", "date du document manquante")]
    shown = f"{document_date:%d/%m/%Y}"
    if document_date > today:
        return [("date", f"document daté du {shown}, postérieur à la date du dépôt")]
    oldest = months_before(today, STATUTES_MAX_AGE_MONTHS)
    if document_date <= oldest:
        return [
            (
                "date",
                f"document daté du {shown} : il doit dater de moins de {STATUTES_MAX_AGE_MONTHS} mois "
                f"(postérieur au {oldest:%d/%m/%Y})",
            )
        ]
    return []
