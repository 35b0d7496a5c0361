"""`GET /`: a short page saying what this server is and where its API starts.

Someone who opens the server's address in a browser used to get a FHIR 404 in JSON. Until the
public web page of the directory exists (it will replace this module), they get a few lines,
in French first (the directory's public) then in English, pointing to `/fhir/metadata`.
"""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response

from fhirsrv.api.routes import base_url

home = Blueprint("home", __name__)

_PAGE = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Annuaire régional des soins oncologiques de support — serveur FHIR</title>
</head>
<body>
<main>
<section lang="fr">
<h1>Annuaire régional des soins oncologiques de support</h1>
<p>Ce serveur publie l'annuaire des soins oncologiques de support (douleur, nutrition, soutien
psychologique, activité physique adaptée, soins palliatifs…) : quelles structures les proposent,
où, pour qui et comment les joindre. Il s'adresse aux logiciels (systèmes d'information
hospitaliers, plateformes de coordination, outils de parcours) par une API FHIR R4 au format du
Répertoire opérationnel des ressources (ROR).</p>
<p>Ce que le serveur sait faire : <a href="{metadata}">{metadata}</a>
(CapabilityStatement). La consultation est libre ; l'écriture demande un jeton OAuth 2.</p>
</section>
<section lang="en">
<h2>Regional directory of cancer supportive care</h2>
<p>This server publishes the directory of cancer supportive care (pain, nutrition, psychological
support, adapted physical activity, palliative care…): which structures offer it, where, for
whom and how to reach them. It serves software (hospital systems, coordination platforms,
care-pathway tools) through a FHIR R4 API in the format of the national directory (ROR).</p>
<p>What the server can do: <a href="{metadata}">{metadata}</a> (CapabilityStatement). Reading
is open; writing needs an OAuth 2 token.</p>
</section>
</main>
</body>
</html>
"""


@home.get("/")
def page() -> Response:
    response = Response(_PAGE.replace("{metadata}", escape(base_url() + "/metadata")), mimetype="text/html")
    # Nothing to load: no style, script, image or frame.
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    return response
