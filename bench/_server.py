"""A fhirsrv app plus one fixed-bytes route, served by the same stack as `fhirsrv serve`.

The fixed route is the benchmark's baseline: whatever the HTTP stack (waitress, Flask routing,
the response object) costs, it costs there too, so the ratio isolates fhirsrv's own work.
"""

from __future__ import annotations

import sys

from flask import Flask, Response

from fhirsrv.app import create_app, make_server
from fhirsrv.settings import Settings


def main(database_url: str, port: int, fixed_size: int, auth: bool = False) -> None:
    # Authorization off unless asked: most benchmarks measure the FHIR work, policy_bench.py
    # measures the access policy itself (auth on, no rate limit, against auth off).
    settings = Settings.from_env(
        database_url=database_url,
        load_demo=False,
        auth=auth,
        rate_limit_anonymous=0,
        rate_limit_client=0,
    )
    app = with_fixed_route(create_app(settings), fixed_size)
    make_server(app, settings, "127.0.0.1", port, threads=4, ident="fhirsrv-bench").run()


def with_fixed_route(app: Flask, fixed_size: int) -> Flask:
    """`app` with GET /baseline/fixed: about `fixed_size` bytes of JSON, the same every time."""
    payload = b'{"resourceType":"Basic","text":"' + b"x" * max(0, fixed_size - 40) + b'"}'

    @app.get("/baseline/fixed")
    def fixed() -> Response:
        return Response(payload, content_type="application/fhir+json")

    return app


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "auth")
