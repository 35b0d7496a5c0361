"""The search form: what a visitor asked, checked, and the FHIR search it means.

The form's fields are short French words because the URL is what people share and cite
(`/?categorie=douleur&commune=Brest+(29200)&distance=20`). marshmallow reads them, so every
field error names its field and the page can show it beside that field, as `$apply` does for
the API; codes are then checked against the directory's own CodeSystems, which change at run
time and so cannot be a fixed list in the schema.

`fhir_search` is the whole translation: the page's results are the answer of the anonymous FHIR
search it returns, nothing else (the tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from fhirsrv.web.labels import AXES, CATEGORY, Vocabulary, system_url

PAGE_SIZE = 20
DISTANCES_KM = (5, 10, 20, 30, 50)
DEFAULT_DISTANCE_KM = 20
# What the free-text field may hold: letters, digits, spaces and the punctuation of names. A
# quote or backslash would have to be escaped inside `_filter` and means nothing in a name.
TEXT_PATTERN = r"^[^\"\\<>]*$"


class SearchFormSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # `lang` and tracking parameters a link may carry are not criteria

    categorie = fields.String(load_default="", validate=validate.Length(max=80))
    service = fields.String(load_default="", validate=validate.Length(max=80))
    departement = fields.String(
        load_default="", validate=validate.Regexp(r"^(|\d{2}|2[AB]|97\d)$", error="Not a département code")
    )
    commune = fields.String(load_default="", validate=validate.Length(max=80))
    # "Near me": the browser's position, rounded by the page's script to 0.01° (about 1 km) so a
    # shared link does not give a home address away. Used when no town is typed.
    lat = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=-180, max=180))
    distance = fields.Integer(load_default=DEFAULT_DISTANCE_KM, validate=validate.OneOf(DISTANCES_KM))
    public = fields.String(load_default="", validate=validate.Length(max=80))
    age = fields.String(load_default="", validate=validate.Length(max=80))
    lieu = fields.String(load_default="", validate=validate.Length(max=80))
    phase = fields.String(load_default="", validate=validate.Length(max=80))
    acces = fields.String(load_default="", validate=validate.Length(max=80))
    parcours = fields.String(load_default="", validate=validate.Length(max=80))
    q = fields.String(load_default="", validate=[validate.Length(max=100), validate.Regexp(TEXT_PATTERN)])
    tri = fields.String(load_default="", validate=validate.OneOf(("", "distance", "nom")))
    page = fields.String(load_default="", validate=validate.Length(max=2000))
    debut = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


@dataclass
class SearchForm:
    """The visitor's criteria once read; `errors` maps a field to what is wrong with it."""

    values: dict[str, object]
    errors: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str:
        value = self.values.get(name, "")
        return value if isinstance(value, str) else str(value)

    @property
    def distance(self) -> int:
        value = self.values.get("distance")
        return value if isinstance(value, int) else DEFAULT_DISTANCE_KM

    @property
    def position(self) -> tuple[float, float] | None:
        lat, lon = self.values.get("lat"), self.values.get("lon")
        if isinstance(lat, float) and isinstance(lon, float):
            return round(lat, 2), round(lon, 2)
        return None

    @property
    def start(self) -> int:
        value = self.values.get("debut")
        return value if isinstance(value, int) else 0

    @property
    def is_empty(self) -> bool:
        criteria = ("categorie", "service", "departement", "commune", "q", *AXES)
        return not any(self.text(name) for name in criteria) and self.position is None


def read_form(args: dict[str, str], vocabulary: Vocabulary) -> SearchForm:
    """The form from a query string. Each bad field is reported and left out of the search;
    the others still apply, so one typo in a shared link does not lose the whole query."""
    errors: dict[str, str] = {}
    raw = {k: v.strip() for k, v in args.items() if v.strip() or k not in ("lat", "lon")}
    try:
        values = SearchFormSchema().load(raw)
    except ValidationError as invalid:
        messages = invalid.normalized_messages()
        errors.update({name: " ".join(map(str, msgs)) for name, msgs in messages.items()})  # type: ignore[union-attr]
        kept = {k: v for k, v in raw.items() if k not in messages}
        values = SearchFormSchema().load(kept)
    form = SearchForm(values, errors)
    _check_codes(form, vocabulary)
    return form


def _check_codes(form: SearchForm, vocabulary: Vocabulary) -> None:
    category = form.text("categorie")
    if category and category not in {c.code for c in vocabulary.concepts(CATEGORY)}:
        form.errors["categorie"] = f"Unknown category: {category}"
        form.values["categorie"] = ""
    service = form.text("service")
    if service:
        parent = vocabulary.parent_of(CATEGORY, service)
        if parent is None or (form.text("categorie") and parent.code != form.text("categorie")):
            form.errors["service"] = f"Not a service of the chosen category: {service}"
            form.values["service"] = ""
    for name, (_, system) in AXES.items():
        code = form.text(name)
        if code and vocabulary.find(system, code) is None:
            form.errors[name] = f"Unknown value: {code}"
            form.values[name] = ""


def fhir_search(form: SearchForm, point: tuple[float, float] | None, canonical_base: str) -> list[tuple[str, str]]:
    """The anonymous `HealthcareService` search the page shows, with what a result needs to be
    shown (its structure, places and secure-messaging endpoint) included. `point`: the town's
    town hall, or the visitor's own position ("near me")."""
    params: list[tuple[str, str]] = []
    category_system = system_url(canonical_base, CATEGORY)
    if form.text("service"):
        params.append(("sos-category", f"{category_system}|{form.text('service')}"))
    elif form.text("categorie"):
        params.append(("sos-category:below", f"{category_system}|{form.text('categorie')}"))
    if form.text("departement"):
        params.append(("departement", form.text("departement")))
    for name, (parameter, system) in AXES.items():
        if form.text(name):
            params.append((parameter, f"{system_url(canonical_base, system)}|{form.text(name)}"))
    if form.text("q"):
        typed = form.text("q")
        params.append(("_filter", f'name co "{typed}" or organization.name co "{typed}"'))
    if point is not None:
        params.append(("location.near", f"{point[0]}|{point[1]}|{form.distance}|km"))
    by_distance = point is not None and form.text("tri") != "nom"
    params.append(("_sort", "near" if by_distance else "name"))
    params += [
        ("_count", str(PAGE_SIZE)),
        ("_total", "accurate"),
        ("_include", "HealthcareService:organization"),
        ("_include", "HealthcareService:location"),
        ("_include", "HealthcareService:endpoint"),
    ]
    if form.text("page"):
        params.append(("_cursor", form.text("page")))
    return params
