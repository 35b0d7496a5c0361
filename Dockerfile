# The fhirsrv server image, run by docker-compose.yml (README: "Running with docker compose").
FROM python:3.11-slim-bookworm

# pg_dump and pg_restore of the compose file's PostgreSQL (16), for `fhirsrv db backup|restore`:
# Debian 12 ships 15, which refuses to dump a newer server, so they come from the PostgreSQL
# project's own repository (its signing key ships in postgresql-common).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends postgresql-client-16 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
# Editable: the server reads profiles/, terminology/ and seed/ beside its package.
RUN pip install --no-cache-dir -e . \
    && useradd --system --home-dir /app fhirsrv \
    && mkdir -p /app/var /backups \
    && chown fhirsrv /app/var /backups
USER fhirsrv
EXPOSE 8080
# Migrate (and bring derived data up to date), then serve; docker-compose.yml adds workers.
CMD ["sh", "-c", "fhirsrv db upgrade && exec fhirsrv serve --host 0.0.0.0 --port 8080"]
