"""The application form of `Organization/$apply`: a FHIR Parameters body read into clean values.

Why marshmallow and not a FHIR model: the body is not a directory resource but a form filled in
by an anonymous applicant, and what matters is telling that applicant, field by field and in
French, what to fix. Each marshmallow field error becomes one FieldError (hence one
OperationOutcome issue) whose `expression` is the FHIRPath of the offending element.

Input format
============

The body is a FHIR R4 ``Parameters`` resource (``resourceType`` "Parameters"; only ``id``,
``meta``, ``implicitRules``, ``language`` and ``parameter`` are accepted at the top level). Each
parameter below carries its content in ``part``, never in ``value[x]``; each part has a ``name``
and exactly one value of the stated type (``extension`` and ``id`` are tolerated, nothing else).
Unknown parameter or part names are errors: a typo must never be dropped silently.

``structure`` (exactly once)
    ``name``           valueString  required
    ``siret``          valueString  14 digits, spaces ignored, checked with the Luhn key (the
                                    SIREN, its first 9 digits, too; La Poste's establishments,
                                    SIREN 356000000, use their own key: digit sum multiple of 5)
    ``finess``         valueString  9 characters: digits, or 2A/2B (Corsica) then 7 digits
                                    -- at least one of ``siret`` / ``finess``
    ``structureType``  valueCode    required; an active code of CodeSystem sos-structure-type
                                    (individual practitioners are inactive there: the grid is
                                    for structures)
    ``addressLine``    valueString  optional
    ``postalCode``     valueString  required, 5 digits
    ``city``           valueString  required
    ``commune``        valueString  optional, INSEE commune code (5 digits, or 2A/2B + 3 digits)
    ``phone``          valueString  6 to 15 digits, optional leading +; spaces, dots, dashes
                                    and brackets allowed between them
    ``email``          valueString  e-mail address
                                    -- at least one of ``phone`` / ``email``

``referent`` (exactly once): the person the coordination teams will talk to
    ``given``, ``family``  valueString  required
    ``email``              valueString  required, e-mail address
    ``phone``              valueString  optional

``service`` (once or more)
    ``name``         valueString  required
    ``category``     valueCode    repeatable, at least one; an active code of CodeSystem
                                  sos-category (a top-level category or a specific service)
    ``description``  valueString  optional

``criterion`` (zero or more at $apply; every criterion of the grid is required at $submit)
    ``code``, ``met``, ``evidence``, ``date`` and the criterion-specific booleans: see
    fhirsrv/workflow/grid.py, which owns their schema. $apply already rejects a malformed
    answer so that the applicant learns about it before submitting; the answers are kept as
    given (Application.criteria) for grid.check_grid at $submit.

Strings are stripped; a blank value counts as absent. SIRET, FINESS, postal and INSEE codes
are checked and stored without spaces (FINESS and INSEE codes upper-cased).

Expressions
===========

FHIRPath into the body: ``Parameters.parameter.where(name='referent').part.where(name='email')``.
Repeatable parameters are always indexed, from 0, among the parameters of that name:
``Parameters.parameter.where(name='service')[1].part.where(name='category')``; so is one
occurrence of a repeated part when the error concerns that occurrence (``...category')[2]``).
An error about a whole parameter (missing, or "one of" rules) points at the parameter; a body
that is not a Parameters resource gives one error at ``Parameters``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

import fhirsrv

TERMINOLOGY_DIR = Path(fhirsrv.__file__).resolve().parent.parent / "terminology"
DEFAULT_CATEGORY_PATH = TERMINOLOGY_DIR / "CodeSystem-sos-category.json"
# What an application may hold at most: parameters (a structure, a referent, its services and
# the grid's criteria) and parts in one parameter (a service's categories are the most).
MAX_PARAMETERS = 100
MAX_PARTS = 200
DEFAULT_STRUCTURE_TYPE_PATH = TERMINOLOGY_DIR / "CodeSystem-sos-structure-type.json"

REQUIRED = "Champ obligatoire"
UNKNOWN_PART = "Élément inconnu : « {name} »"
UNKNOWN_PARAMETER = "Paramètre inconnu : « {name} »"
NOT_REPEATABLE = "Cet élément ne peut figurer qu'une fois"
INVALID_EMAIL = "Adresse électronique invalide"

# Marshmallow's own messages are English; every field gets these instead.
_FIELD_MESSAGES = {
    "required": REQUIRED,
    "null": REQUIRED,
    "invalid": "Valeur invalide",
    "validator_failed": "Valeur invalide",
}

# Top-level elements of a Parameters resource other than `parameter` that carry no form data.
_PARAMETERS_ELEMENTS = frozenset({"resourceType", "id", "meta", "implicitRules", "language", "parameter"})
# Elements of a parameter or part beside its name, value and parts that may be present harmlessly.
_TOLERATED = frozenset({"id", "extension"})


# --------------------------------------------------------------------------------------------
# Errors and expressions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """One problem in the body, ready to become an OperationOutcome issue.

    `message` is shown to the applicant as is, hence French.
    """

    expression: str
    message: str


def _quote(name: str) -> str:
    """A FHIRPath string literal: a user-supplied name must not break the expression."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parameter_expression(name: str, index: int | None = None) -> str:
    """FHIRPath of a parameter by name; `index` (0-based) for repeatable ones."""
    base = f"Parameters.parameter.where(name={_quote(name)})"
    return base if index is None else f"{base}[{index}]"


def part_expression(parent: str, name: str, index: int | None = None) -> str:
    """FHIRPath of a part of `parent` by name; `index` (0-based) for one occurrence of several."""
    base = f"{parent}.part.where(name={_quote(name)})"
    return base if index is None else f"{base}[{index}]"


# --------------------------------------------------------------------------------------------
# Code systems
# --------------------------------------------------------------------------------------------


def load_codes(path: str | Path) -> frozenset[str]:
    """The codes an applicant may use from a CodeSystem JSON file, read once per file.

    Concepts marked inactive (property `inactive` true, or status retired) are left out: they
    are kept in the CodeSystem for old data, not offered for new entries.
    """
    return _load_codes(Path(path).resolve())


@functools.lru_cache(maxsize=16)
def _load_codes(path: Path) -> frozenset[str]:
    with path.open(encoding="utf-8") as handle:
        code_system = json.load(handle)
    codes: set[str] = set()
    stack = list(code_system.get("concept", []))
    while stack:
        concept = stack.pop()
        stack.extend(concept.get("concept", []))
        properties = {p.get("code"): p for p in concept.get("property", [])}
        inactive = properties.get("inactive", {}).get("valueBoolean") is True
        retired = properties.get("status", {}).get("valueCode") == "retired"
        if not (inactive or retired):
            codes.add(concept["code"])
    return frozenset(codes)


# --------------------------------------------------------------------------------------------
# Field types shared with grid.py
# --------------------------------------------------------------------------------------------


def _messages(**overrides: str) -> dict[str, str]:
    return {**_FIELD_MESSAGES, **overrides}


class Text(fields.String):
    """A valueString/valueCode: stripped, blank counting as absent.

    Marshmallow checks `required` on the key only; an applicant who sends "  " has still not
    filled the field, so a blank required value fails with the same message as a missing one.
    """

    def __init__(self, *, fhir_type: str = "valueString", **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", _messages(invalid="Texte attendu"))
        metadata = {**kwargs.pop("metadata", {}), "fhir_type": fhir_type}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip()
        if text:
            return text
        if self.required:
            raise self.make_error("required")
        return None

    def _validate(self, value: Any) -> None:
        # A blank optional value was turned into None: nothing left to validate.
        if value is not None:
            super()._validate(value)


class Code(Text):
    """A valueCode drawn from one of the schema's vocabularies (the schema holds the code sets,
    so tests and deployments can load them from another file)."""

    def __init__(self, vocabulary: str, *, unknown: str, **kwargs: Any) -> None:
        super().__init__(fhir_type="valueCode", **kwargs)
        self.vocabulary = vocabulary
        self.unknown_message = unknown

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        code = super()._deserialize(value, attr, data, **kwargs)
        if code is not None and code not in self.root.vocabularies[self.vocabulary]:
            raise ValidationError(self.unknown_message.format(code=code))
        return code


class StrictBoolean(fields.Boolean):
    """A valueBoolean: JSON true/false only. Marshmallow's Boolean would take "yes" or 1, and
    a grid answer must not turn into a commitment by accident."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", _messages(invalid="Booléen attendu (true ou false)"))
        super().__init__(metadata={"fhir_type": "valueBoolean"}, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class FhirDate(fields.Field):
    """A valueDate given to the day (AAAA-MM-JJ): a document's age is counted in days."""

    _PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", _messages(invalid="Date invalide (format attendu : AAAA-MM-JJ)"))
        super().__init__(metadata={"fhir_type": "valueDate"}, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> date:
        if not isinstance(value, str) or not self._PATTERN.fullmatch(value):
            raise self.make_error("invalid")
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc


class Repeated(fields.List):
    """A part that may occur several times; `min_count` occurrences required."""

    def __init__(self, inner: fields.Field, *, min_count: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", _messages())
        metadata = {"fhir_type": inner.metadata["fhir_type"]}
        super().__init__(inner, metadata=metadata, required=min_count > 0, **kwargs)


class PartsSchema(Schema):
    """Base of the schemas reading one parameter's parts.

    `one_of` lists groups of part names of which at least one must be present, with the message
    (they are checked on the parts as sent, so an invalid SIRET is not also reported as "no
    identifier"). `vocabularies` maps the names used by Code fields to their code sets.
    """

    one_of: tuple[tuple[tuple[str, ...], str], ...] = ()

    class Meta:
        # Unknown part names never reach marshmallow: load_parameter reports them by name.
        unknown = EXCLUDE

    def __init__(self, *, vocabularies: Mapping[str, Collection[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabularies: Mapping[str, Collection[str]] = vocabularies or {}


# --------------------------------------------------------------------------------------------
# Reading one parameter through its schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedParameter:
    """What one parameter's parts gave: the schema's result when all is well, otherwise the
    fields that did load (grid.py needs the criterion code of a partly wrong answer)."""

    value: Any | None
    valid: Mapping[str, Any]  # by part name; only when the schema has no post_load (or on error)
    errors: tuple[FieldError, ...]
    flawed: frozenset[str]  # part names (and "" for the parameter itself) with an error


def load_parameter(parameter: Any, schema: PartsSchema, expression: str) -> LoadedParameter:
    """Load a parameter's parts through `schema`, every problem as a FieldError.

    The structural checks (part names, value[x] types, repetition) are done here because they
    are the same for every parameter and marshmallow does not see FHIR's shape; what a value
    must look like is the schema's business.
    """
    by_part = {(field.data_key or name): field for name, field in schema.load_fields.items()}
    part_of = {name: (field.data_key or name) for name, field in schema.load_fields.items()}
    errors: list[FieldError] = []
    flawed: set[str] = set()

    def fail(at: str, text: str, part: str = "") -> None:
        errors.append(FieldError(at, text))
        flawed.add(part)

    data: dict[str, Any] = {}
    present: set[str] = set()  # part names sent with a non-blank value, valid or not
    positions: dict[str, list[int]] = {}  # list item index -> occurrence index, per part
    occurrences: dict[str, int] = {}

    parts = _parts_of(parameter, expression, fail)
    if len(parts) > MAX_PARTS:
        # A form has a few dozen parts (a service's categories are the most: under 100). A
        # body with thousands costs seconds and an answer of one error each: refused whole.
        fail(expression, f"Trop d'éléments ({len(parts)}) : au plus {MAX_PARTS} par paramètre")
        return LoadedParameter(None, {}, tuple(errors), frozenset(flawed))
    for position, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            fail(f"{expression}.part[{position}]", "Élément sans nom")
            continue
        name = part["name"]
        field = by_part.get(name)
        if field is None:
            fail(part_expression(expression, name), UNKNOWN_PART.format(name=name), name)
            continue
        occurrence = occurrences.get(name, 0)
        occurrences[name] = occurrence + 1
        repeated = isinstance(field, fields.List)
        at = part_expression(expression, name, occurrence if repeated or occurrence else None)
        if occurrence and not repeated:
            fail(at, NOT_REPEATABLE, name)
            continue
        value, problem = _part_value(part, field.metadata["fhir_type"])
        if problem:
            fail(at, problem, name)
            continue
        if not (isinstance(value, str) and not value.strip()):
            present.add(name)
        if repeated:
            data.setdefault(name, []).append(value)
            positions.setdefault(name, []).append(occurrence)
        else:
            data[name] = value

    for group, text in schema.one_of:
        if not present.intersection(group):
            fail(expression, text)

    value: Any | None = None
    loaded_fields: Any = {}
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        loaded_fields = exc.valid_data
        for key, messages in exc.normalized_messages().items():
            if key in flawed and not isinstance(messages, dict):
                continue  # already reported by the structural checks (e.g. wrong value type)
            _translate(key, messages, expression, positions, fail)
    else:
        loaded_fields = loaded
        value = None if errors else loaded
    valid = (
        {part_of[name]: item for name, item in loaded_fields.items() if name in part_of}
        if isinstance(loaded_fields, dict)
        else {}
    )
    return LoadedParameter(value, valid, tuple(errors), frozenset(flawed))


def _parts_of(parameter: Any, expression: str, fail: Callable[..., None]) -> list[Any]:
    """The parts of a parameter, after checking it is a parameter made of parts."""
    if not isinstance(parameter, dict):
        fail(expression, "Paramètre mal formé : objet attendu")
        return []
    for key in parameter:
        if key in ("name", "part") or key in _TOLERATED:
            continue
        if key.startswith("value") or key == "resource":
            fail(expression, "Ce paramètre se compose d'éléments « part », pas d'une valeur")
        else:
            fail(f"{expression}.{key}", f"Élément inconnu : « {key} »")
    parts = parameter.get("part", [])
    if not isinstance(parts, list):
        fail(f"{expression}.part", "Liste d'éléments attendue")
        return []
    return parts


def _part_value(part: dict[str, Any], fhir_type: str) -> tuple[Any, str | None]:
    """A part's single value of the expected value[x] type, or why there is none."""
    values = [key for key in part if key.startswith("value")]
    others = [key for key in part if key not in ("name", *values) and key not in _TOLERATED]
    if others:
        return None, f"Élément inattendu dans cette partie : « {others[0]} »"
    if values != [fhir_type]:
        return None, f"Une valeur de type {fhir_type} est attendue"
    return part[fhir_type], None


def _translate(
    key: str,
    messages: Any,
    expression: str,
    positions: Mapping[str, list[int]],
    fail: Callable[..., None],
) -> None:
    """Marshmallow's error dict -> FieldErrors: keys are part names (data keys), "_schema"
    the parameter itself, and integer keys the items of a repeated part."""
    if isinstance(messages, dict):
        for index, item_messages in messages.items():
            occurrence = positions.get(key, [])[index] if isinstance(index, int) else None
            at = part_expression(expression, key, occurrence)
            for text in _flatten(item_messages):
                fail(at, text, key)
        return
    at = expression if key == "_schema" else part_expression(expression, key)
    for text in _flatten(messages):
        fail(at, text, "" if key == "_schema" else key)


def _flatten(messages: Any) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if isinstance(messages, dict):
        return [text for nested in messages.values() for text in _flatten(nested)]
    return [text for nested in messages for text in _flatten(nested)]


# --------------------------------------------------------------------------------------------
# Identifier checks
# --------------------------------------------------------------------------------------------

_SPACES = re.compile(r"[\s\u00a0\u202f]+")
LA_POSTE_SIREN = "356000000"


def luhn_valid(digits: str) -> bool:
    """The Luhn key used by SIREN and SIRET numbers (INSEE)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def siret_problem(siret: str) -> str | None:
    """Why a SIRET (spaces removed) is not one, or None.

    La Poste's establishments share SIREN 356000000 and are keyed by a digit sum multiple of 5
    instead of Luhn (INSEE); without the exception its offices could never apply.
    """
    if not re.fullmatch(r"\d{14}", siret):
        return "SIRET invalide : 14 chiffres attendus"
    siren = siret[:9]
    if siren == LA_POSTE_SIREN:
        key_ok = luhn_valid(siret) or sum(int(c) for c in siret) % 5 == 0
    else:
        key_ok = luhn_valid(siren) and luhn_valid(siret)
    return None if key_ok else "SIRET invalide : clé de contrôle erronée (vérifiez la saisie)"


def _no_spaces(value: str | None) -> str | None:
    return None if value is None else _SPACES.sub("", value).upper()


def _validate_siret(value: str | None) -> None:
    problem = None if value is None else siret_problem(_no_spaces(value) or "")
    if problem:
        raise ValidationError(problem)


def _regexp(pattern: str, error: str) -> Callable[[str | None], None]:
    """A validator on the value without spaces (identifiers are often typed in groups)."""
    compiled = re.compile(pattern)

    def check(value: str | None) -> None:
        if value is not None and not compiled.fullmatch(_no_spaces(value) or ""):
            raise ValidationError(error)

    return check


_email = validate.Email(error=INVALID_EMAIL)
_phone = _regexp(r"\+?\d{6,15}", "Numéro de téléphone invalide")
_PHONE_SEPARATORS = re.compile(r"[\s.\-()\u00a0\u202f]+")


def _validate_phone(value: str | None) -> None:
    if value is not None:
        _phone(_PHONE_SEPARATORS.sub("", value))


# --------------------------------------------------------------------------------------------
# The form's schemas and values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Structure:
    name: str
    siret: str | None
    finess: str | None
    structure_type: str
    address_line: str | None
    postal_code: str
    city: str
    commune: str | None
    phone: str | None
    email: str | None


@dataclass(frozen=True)
class Referent:
    given: str
    family: str
    email: str
    phone: str | None


@dataclass(frozen=True)
class Service:
    name: str
    categories: tuple[str, ...]
    description: str | None


@dataclass(frozen=True)
class Application:
    """A well-formed application. `criteria` are the criterion parameters as sent (shape already
    checked): the grid itself is judged at $submit, against that day's date."""

    structure: Structure
    referent: Referent
    services: tuple[Service, ...]
    criteria: tuple[Mapping[str, Any], ...]


class StructureSchema(PartsSchema):
    one_of = (
        (("siret", "finess"), "Au moins un identifiant est obligatoire : SIRET ou FINESS"),
        (
            ("phone", "email"),
            "Au moins un moyen de contact est obligatoire : téléphone ou adresse électronique",
        ),
    )

    name = Text(required=True)
    siret = Text(validate=_validate_siret)
    finess = Text(
        validate=_regexp(
            r"(\d{2}|2[AB])\d{7}",
            "FINESS invalide : 9 caractères attendus (chiffres, ou 2A/2B pour la Corse)",
        )
    )
    structure_type = Code(
        "structure-type",
        required=True,
        data_key="structureType",
        unknown="Type de structure inconnu ou non admis dans l'annuaire : « {code} »",
    )
    address_line = Text(data_key="addressLine")
    postal_code = Text(
        required=True,
        data_key="postalCode",
        validate=_regexp(r"\d{5}", "Code postal invalide : 5 chiffres attendus"),
    )
    city = Text(required=True)
    commune = Text(
        validate=_regexp(r"(\d{2}|2[AB])\d{3}", "Code commune INSEE invalide : 5 caractères attendus")
    )
    phone = Text(validate=_validate_phone)
    email = Text(validate=_email)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Structure:
        return Structure(
            name=data["name"],
            siret=_no_spaces(data.get("siret")),
            finess=_no_spaces(data.get("finess")),
            structure_type=data["structure_type"],
            address_line=data.get("address_line"),
            postal_code=_no_spaces(data["postal_code"]) or "",
            city=data["city"],
            commune=_no_spaces(data.get("commune")),
            phone=data.get("phone"),
            email=data.get("email"),
        )


class ReferentSchema(PartsSchema):
    given = Text(required=True)
    family = Text(required=True)
    email = Text(required=True, validate=_email)
    phone = Text(validate=_validate_phone)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Referent:
        return Referent(data["given"], data["family"], data["email"], data.get("phone"))


class ServiceSchema(PartsSchema):
    name = Text(required=True)
    categories = Repeated(
        Code("category", required=True, unknown="Catégorie inconnue : « {code} » (CodeSystem sos-category)"),
        min_count=1,
        data_key="category",
    )
    description = Text()

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Service:
        # The same category twice says nothing more: keep the first occurrence.
        categories = tuple(dict.fromkeys(data["categories"]))
        return Service(data["name"], categories, data.get("description"))


@dataclass(frozen=True)
class _ParameterRule:
    schema: type[PartsSchema] | None  # None: checked elsewhere (criterion, see grid.py)
    min_count: int
    repeatable: bool


_PARAMETERS: dict[str, _ParameterRule] = {
    "structure": _ParameterRule(StructureSchema, 1, False),
    "referent": _ParameterRule(ReferentSchema, 1, False),
    "service": _ParameterRule(ServiceSchema, 1, True),
    "criterion": _ParameterRule(None, 0, True),
}


def parameters_by_name(parameters: Any) -> tuple[dict[str, list[Any]] | None, list[FieldError]]:
    """Group the parameters of a Parameters body by name, reporting what is not a parameter.

    None instead of the groups when the body is unusable as a whole (not a Parameters
    resource): then the one error says so, rather than a list of "missing" parameters. Shared
    with grid.py so that $submit reads a body with the same rules.
    """
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        return None, [
            FieldError("Parameters", "Le corps de la requête doit être une ressource FHIR Parameters")
        ]
    items = parameters.get("parameter", [])
    if not isinstance(items, list):
        return None, [FieldError("Parameters.parameter", "Liste de paramètres attendue")]
    errors = [
        FieldError(f"Parameters.{key}", f"Élément inconnu : « {key} »")
        for key in parameters
        if key not in _PARAMETERS_ELEMENTS
    ]
    if len(items) > MAX_PARAMETERS:
        return None, [
            FieldError("Parameters.parameter", f"Trop de paramètres ({len(items)}) : au plus {MAX_PARAMETERS}")
        ]
    grouped: dict[str, list[Any]] = {}
    for position, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(FieldError(f"Parameters.parameter[{position}]", "Paramètre sans nom"))
            continue
        grouped.setdefault(name, []).append(item)
    return grouped, errors


def parse_application(
    parameters: Any,
    *,
    category_codes: Collection[str] | None = None,
    structure_type_codes: Collection[str] | None = None,
) -> tuple[Application | None, list[FieldError]]:
    """Read an $apply body: the Application, or None and every error found (all of them at once,
    so the applicant fixes the form in one round).

    The code sets default to the shipped terminology files; pass others to test or to follow a
    deployment's own CodeSystems.
    """
    vocabularies = {
        "category": load_codes(DEFAULT_CATEGORY_PATH) if category_codes is None else category_codes,
        "structure-type": (
            load_codes(DEFAULT_STRUCTURE_TYPE_PATH) if structure_type_codes is None else structure_type_codes
        ),
    }
    grouped, errors = parameters_by_name(parameters)
    if grouped is None:
        return None, errors
    for name, items in grouped.items():
        if name not in _PARAMETERS:
            for occurrence in range(len(items)):
                at = parameter_expression(name, occurrence if len(items) > 1 else None)
                errors.append(FieldError(at, UNKNOWN_PARAMETER.format(name=name)))

    values: dict[str, list[Any]] = {}
    for name, rule in _PARAMETERS.items():
        items = grouped.get(name, [])
        if len(items) < rule.min_count:
            errors.append(FieldError(parameter_expression(name), REQUIRED))
        if not rule.repeatable:
            errors.extend(
                FieldError(parameter_expression(name, k), NOT_REPEATABLE) for k in range(1, len(items))
            )
            items = items[:1]
        for k, item in enumerate(items):
            at = parameter_expression(name, k if rule.repeatable else None)
            if rule.schema is None:
                errors.extend(_criterion_errors(item, at))
                values.setdefault(name, []).append(item)
                continue
            loaded = load_parameter(item, rule.schema(vocabularies=vocabularies), at)
            errors.extend(loaded.errors)
            values.setdefault(name, []).append(loaded.value)

    if errors:
        return None, errors
    application = Application(
        structure=values["structure"][0],
        referent=values["referent"][0],
        services=tuple(values["service"]),
        criteria=tuple(copy.deepcopy(item) for item in values.get("criterion", [])),
    )
    return application, []


def _criterion_errors(parameter: Any, expression: str) -> list[FieldError]:
    """The shape errors of one criterion answer, by grid.py's schema.

    Imported here rather than at the top: grid.py builds on this module's machinery (FieldError,
    load_parameter), so a module-level import either way would be circular.
    """
    from fhirsrv.workflow.grid import load_answer

    return list(load_answer(parameter, expression).errors)
