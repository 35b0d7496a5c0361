"""`_include:iterate` stops at the include-depth limit of the settings, however long the chain."""

from __future__ import annotations

import dataclasses

from fhirsrv.app import create_app


def test_iterate_stops_at_the_configured_depth(settings):  # type: ignore[no-untyped-def]
    app = create_app(dataclasses.replace(settings, max_include_depth=2))
    client = app.test_client()
    for n in range(5):  # org-0 is part of org-1, part of org-2, ...
        res = {"resourceType": "Organization", "id": f"org-{n}", "name": f"Niveau {n}"}
        if n < 4:
            res["partOf"] = {"reference": f"Organization/org-{n + 1}"}
        client.put(f"/fhir/Organization/org-{n}", json=res, headers={"Content-Type": "application/fhir+json"})
    bundle = client.get("/fhir/Organization?_id=org-0&_include:iterate=Organization:partof").get_json()
    included = sorted(e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert included == ["org-1", "org-2"]
    app.extensions["fhirsrv"].engine.dispose()
