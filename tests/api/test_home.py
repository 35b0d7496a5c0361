"""`GET /`: what a person who opens the server's address in a browser sees."""

from __future__ import annotations


def test_the_root_explains_the_server_in_french_then_english_and_points_to_metadata(client):
    res = client.get("/")
    assert res.status_code == 200
    assert res.mimetype == "text/html" and res.mimetype_params["charset"] == "utf-8"
    page = res.get_data(as_text=True)
    assert page.startswith("<!doctype html>") and '<html lang="fr">' in page
    french, english = page.index('<section lang="fr">'), page.index('<section lang="en">')
    assert french < english
    assert "soins oncologiques de support" in page[french:english]
    assert "cancer supportive care" in page[english:]
    # The link is under the public base (FHIRSRV_BASE_URL here), and it answers.
    assert page.count('href="http://fhir.test/fhir/metadata"') == 2
    assert client.get("/fhir/metadata").get_json()["resourceType"] == "CapabilityStatement"
    assert client.head("/").status_code == 200
