"""FHIR interactions (read, create, update, ...) as plain functions: no HTTP, no Flask.

Each takes the `Services` it needs and a `RequestInfo`, and returns a `Result` that api/ renders.
"""
