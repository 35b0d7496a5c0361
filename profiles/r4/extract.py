"""Rebuild profiles/r4/*.json from the HL7 FHIR R4 4.0.1 definition files.

The validator needs the base snapshots of the resources and datatypes fhirsrv serves, and the
core ValueSets/CodeSystems of their required bindings. They are copied once into the project,
trimmed to the fields validation reads, so the server never depends on files outside its tree.

Usage: python profiles/r4/extract.py /path/to/fhir-r4-definitions
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
SD_KEYS = ("resourceType", "id", "url", "version", "name", "status", "kind", "abstract", "type")
SD_KEYS += ("baseDefinition", "derivation", "fhirVersion")
ELEMENT_KEYS = ("id", "path", "sliceName", "min", "max", "type", "binding", "slicing", "contentReference")
ELEMENT_KEYS += ("constraint", "base")


def _trim_element(el: dict) -> dict:
    out = {k: el[k] for k in ELEMENT_KEYS if k in el}
    out.update({k: v for k, v in el.items() if k.startswith(("fixed", "pattern"))})
    if "binding" in out:
        out["binding"] = {k: v for k, v in out["binding"].items() if k in ("strength", "valueSet")}
    if "constraint" in out:
        keep = ("key", "severity", "human", "expression", "source")
        out["constraint"] = [{k: c[k] for k in keep if k in c} for c in out["constraint"]]
    if "type" in out:
        out["type"] = [{k: t[k] for k in ("code", "profile", "targetProfile") if k in t} for t in out["type"]]
    return out


def _trim_sd(sd: dict) -> dict:
    out = {k: sd[k] for k in SD_KEYS if k in sd}
    out["snapshot"] = {"element": [_trim_element(e) for e in sd["snapshot"]["element"]]}
    return out


def _bundle(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def main(src: Path) -> None:
    resources = json.loads((src / "structuredefinitions-resources.json").read_text())
    types = json.loads((src / "structuredefinitions-types.json").read_text())
    sds = [_trim_sd(e["resource"]) for e in resources["entry"] + types["entry"]]
    bound = {
        el["binding"]["valueSet"].split("|")[0]
        for sd in sds
        for el in sd["snapshot"]["element"]
        if el.get("binding", {}).get("strength") == "required" and el["binding"].get("valueSet")
    }
    terms = [e["resource"] for e in json.loads((src / "valuesets.json").read_text())["entry"]]
    valuesets = [r for r in terms if r["resourceType"] == "ValueSet" and r.get("url") in bound]
    systems = {
        inc.get("system")
        for vs in valuesets
        for inc in vs.get("compose", {}).get("include", [])
        if inc.get("system")
    }
    codesystems = [r for r in terms if r["resourceType"] == "CodeSystem" and r.get("url") in systems]
    keep_vs = ("resourceType", "id", "url", "version", "name", "status", "compose")
    keep_cs = ("resourceType", "id", "url", "version", "name", "status", "content", "concept")
    terminology = [{k: r[k] for k in keep_vs if k in r} for r in valuesets]
    terminology += [{k: r[k] for k in keep_cs if k in r} for r in codesystems]
    dump = {"ensure_ascii": False, "separators": (",", ":")}
    (HERE / "structuredefinitions.json").write_text(json.dumps(_bundle(sds), **dump))
    (HERE / "terminology.json").write_text(json.dumps(_bundle(terminology), **dump))
    print(f"{len(sds)} StructureDefinitions, {len(valuesets)} ValueSets, {len(codesystems)} CodeSystems")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fhir-r4"))
