"""The application form at /candidature: its fields, the `Organization/$apply` body they make,
and the way back from the operation's OperationOutcome to the fields.

The form asks for what `$apply` reads (fhirsrv/workflow/forms.py documents the Parameters
format): the structure, its referent and a first offer. It judges nothing itself: the values
go to the operation as typed (blank ones left out, as the operation counts them absent), and
what the operation refuses comes back as issues whose `expression` is a FHIRPath into the body,
`Parameters.parameter.where(name='structure').part.where(name='siret')`, which `take_issues`
turns back into the field that holds the value. The operation's "at least one of" rules (an
identifier, a contact) point at the whole parameter; their message is matched against the
rules of forms.StructureSchema to find the pair of fields concerned. A message the form cannot
place (an expression it does not know) is still shown, at the top: nothing the API says is lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from fhirsrv.errors import Issue
from fhirsrv.web.sending import valid_key
from fhirsrv.workflow.forms import StructureSchema


@dataclass(frozen=True)
class Field:
    """One input: the part of one parameter of the body it fills."""

    parameter: str
    part: str
    label: str  # catalogue key
    kind: str = "text"  # text | email | tel | select | textarea | checkboxes
    required: bool = False
    autocomplete: str | None = None
    hint: str | None = None  # catalogue key
    inputmode: str | None = None

    @property
    def name(self) -> str:
        """The HTML name, and the id after "f-": `structure-siret`."""
        return f"{self.parameter}-{self.part}"

    is_group = False

    @property
    def value_type(self) -> str:
        return "valueCode" if self.kind in ("select", "checkboxes") else "valueString"


@dataclass(frozen=True)
class Group:
    """Fields of which at least one must be filled (the operation's "one of" rules)."""

    parameter: str
    key: str
    legend: str  # catalogue key: the rule, said where the pair is
    label: str  # catalogue key: the pair's name, in the box at the top
    fields: tuple[Field, ...]
    is_group = True

    @property
    def name(self) -> str:
        return f"{self.parameter}-{self.key}"

    @property
    def parts(self) -> frozenset[str]:
        return frozenset(f.part for f in self.fields)


@dataclass(frozen=True)
class Section:
    parameter: str
    legend: str  # catalogue key
    hint: str | None
    items: tuple[Field | Group, ...]

    def fields(self) -> Iterable[Field]:
        for item in self.items:
            yield from item.fields if isinstance(item, Group) else (item,)


KEY_FIELD = "envoi"  # the hidden field of the form's one-time key
_S, _R, _O = "structure", "referent", "service"
SECTIONS = (
    Section(
        _S,
        "apply.structure",
        None,
        (
            Field(_S, "name", "apply.structure_name", required=True, autocomplete="organization"),
            Group(
                _S,
                "identifiers",
                "apply.identifiers",
                "apply.identifiers_label",
                (
                    Field(_S, "siret", "apply.siret", autocomplete="off", hint="apply.siret_hint", inputmode="numeric"),
                    Field(_S, "finess", "apply.finess", autocomplete="off", hint="apply.finess_hint"),
                ),
            ),
            Field(_S, "structureType", "apply.structure_type", kind="select", required=True),
            Field(_S, "addressLine", "apply.address_line", autocomplete="address-line1"),
            Field(
                _S, "postalCode", "apply.postal_code", required=True, autocomplete="postal-code",
                hint="apply.postal_code_hint", inputmode="numeric",
            ),  # fmt: skip
            Field(_S, "city", "apply.city", required=True, autocomplete="address-level2"),
            Group(
                _S,
                "contact",
                "apply.contact",
                "apply.contact_label",
                (
                    Field(_S, "phone", "apply.structure_phone", kind="tel", autocomplete="tel"),
                    Field(_S, "email", "apply.structure_email", kind="email", autocomplete="email"),
                ),
            ),
        ),
    ),
    Section(
        _R,
        "apply.referent",
        "apply.referent_hint",
        (
            Field(_R, "given", "apply.given", required=True, autocomplete="given-name"),
            Field(_R, "family", "apply.family", required=True, autocomplete="family-name"),
            Field(
                _R, "email", "apply.referent_email", kind="email", required=True, autocomplete="email",
                hint="apply.referent_email_hint",
            ),  # fmt: skip
            Field(_R, "phone", "apply.referent_phone", kind="tel", autocomplete="tel"),
        ),
    ),
    Section(
        _O,
        "apply.service",
        "apply.service_hint",
        (
            Field(_O, "name", "apply.service_name", required=True, autocomplete="off", hint="apply.service_name_hint"),
            Field(_O, "category", "apply.categories", kind="checkboxes", required=True, hint="apply.categories_hint"),
            Field(_O, "description", "apply.description", kind="textarea", hint="apply.description_hint"),
        ),
    ),
)
FIELDS = {f.name: f for section in SECTIONS for f in section.fields()}
GROUPS = {item.name: item for section in SECTIONS for item in section.items if isinstance(item, Group)}
_BY_PART = {(f.parameter, f.part): f.name for f in FIELDS.values()}
# A part the form fills from another field: the INSEE commune code, from the postcode and town.
_BY_PART[(_S, "commune")] = f"{_S}-city"
# The operation's "one of" messages, each to the pair of fields it is about.
_GROUP_OF_MESSAGE = {
    (_S, message): group.name
    for parts, message in StructureSchema.one_of
    for group in GROUPS.values()
    if group.parameter == _S and group.parts == frozenset(parts)
}

_NAMED = re.compile(
    r"Parameters\.parameter\.where\(name='(?P<parameter>\w+)'\)(?:\[\d+\])?"
    r"(?:\.part\.where\(name='(?P<part>\w+)'\)(?:\[\d+\])?)?"
)
# The API's JSON checks name elements by position: `parameter[0].part[3].valueString`.
_POSITIONAL = re.compile(r"(?:Parameters\.)?parameter\[(?P<p>\d+)\](?:\.part\[(?P<q>\d+)\])?")


@dataclass(frozen=True)
class Problem:
    """One line of the box at the top: the field it is about (None: the whole form) and what
    the operation said."""

    target: str | None  # the field's or group's name
    message: str


@dataclass
class ApplicationForm:
    """What the visitor typed, kept as typed, and the operation's answer about it."""

    values: dict[str, str] = field(default_factory=dict)  # field name -> text
    categories: list[str] = field(default_factory=list)  # ticked codes, in order
    errors: dict[str, list[str]] = field(default_factory=dict)  # field or group name -> messages
    general: list[str] = field(default_factory=list)
    key: str | None = None  # this load of the form's one-time key (sending.py)
    _positions: dict[tuple[int, int | None], str] = field(default_factory=dict)

    @classmethod
    def read(cls, posted: MultiDict[str, str]) -> ApplicationForm:
        form = cls(key=valid_key(posted.get(KEY_FIELD)))
        for name, spec in FIELDS.items():
            if spec.kind == "checkboxes":
                form.categories = list(dict.fromkeys(v for v in posted.getlist(name) if v.strip()))
            else:
                form.values[name] = posted.get(name, "")
        return form

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def body(self, commune: str | None = None) -> dict[str, Any]:
        """The `Organization/$apply` Parameters: one parameter per section, a part per filled
        field (a ticked category each), `commune` when the town was recognised."""
        parameters: list[dict[str, Any]] = []
        self._positions.clear()
        for p, section in enumerate(SECTIONS):
            parts: list[dict[str, Any]] = []
            self._positions[(p, None)] = section.parameter
            for spec in section.fields():
                typed = self.categories if spec.kind == "checkboxes" else [self.value(spec.name)]
                for text in typed:
                    if text.strip():
                        self._positions[(p, len(parts))] = spec.name
                        # A browser sends a text area's line breaks as CRLF: kept as plain LF.
                        parts.append({"name": spec.part, spec.value_type: text.strip().replace("\r\n", "\n")})
                if spec.parameter == _S and spec.part == "city" and commune:
                    self._positions[(p, len(parts))] = spec.name
                    parts.append({"name": "commune", "valueString": commune})
            parameters.append({"name": section.parameter, **({"part": parts} if parts else {})})
        return {"resourceType": "Parameters", "parameter": parameters}

    def refused(self, issues: Iterable[Issue]) -> None:
        """Each of the operation's issues beside the field (or pair of fields) its expression
        names, else in the box at the top."""
        said: set[tuple[str, str]] = {(t, m) for t, messages in self.errors.items() for m in messages}
        for issue in issues:
            target = next((t for t in (self._target(e, issue.diagnostics) for e in issue.expression) if t), None)
            if target is None:
                self.general.append(issue.diagnostics)
            elif (target, issue.diagnostics) not in said:
                said.add((target, issue.diagnostics))
                self.errors.setdefault(target, []).append(issue.diagnostics)

    def _target(self, expression: str, message: str) -> str | None:
        named = _NAMED.match(expression)
        if named:
            parameter, part = named.group("parameter"), named.group("part")
            if part is None:  # the whole parameter: a "one of" rule, or nothing the form can place
                return _GROUP_OF_MESSAGE.get((parameter, message)) if named.end() == len(expression) else None
            return _BY_PART.get((parameter, part))
        positional = _POSITIONAL.match(expression)
        if positional:
            q = positional.group("q")
            found = self._positions.get((int(positional.group("p")), int(q) if q is not None else None))
            return found if found in FIELDS else None
        return None

    def invalid(self, name: str) -> bool:
        """A field is invalid when it, or the group it belongs to, has an error."""
        return bool(self.errors.get(name)) or any(
            self.errors.get(g.name) and name in (f.name for f in g.fields) for g in GROUPS.values()
        )

    def described_by(self, name: str, hint: bool) -> str:
        """The ids of a field's hint and errors, and of its group's error."""
        ids = [f"h-{name}"] if hint else []
        for group in GROUPS.values():
            if self.errors.get(group.name) and name in (f.name for f in group.fields):
                ids.append(f"e-{group.name}")
        if self.errors.get(name):
            ids.append(f"e-{name}")
        return " ".join(ids)

    def problems(self) -> list[Problem]:
        """The box at the top: every error, in the order of the form, then the others."""
        found = []
        for section in SECTIONS:
            for item in section.items:
                names = [item.name, *(f.name for f in item.fields)] if isinstance(item, Group) else [item.name]
                for name in names:
                    found.extend(Problem(name, message) for message in self.errors.get(name, []))
        return found + [Problem(None, message) for message in self.general]


def label_of(name: str) -> str:
    """The catalogue key naming a field or group in the box at the top."""
    return GROUPS[name].label if name in GROUPS else FIELDS[name].label


def first_field(name: str, first_category: str | None) -> str:
    """The id a link to a field (or group) of the box at the top goes to: an input, so that
    following it puts the cursor there."""
    group = GROUPS.get(name)
    if group is not None:
        name = group.fields[0].name
    if FIELDS[name].kind == "checkboxes" and first_category:
        return f"f-{name}-{first_category}"
    return f"f-{name}"
