"""Seed data: the demo region's resources and a generator of directories of any size.

`resources` is the one place where FHIR shapes are decided; `shape` holds the statistical shape
(structure types, SOS per type, axes); `draw` turns a random source into a structure;
`generate` streams a whole directory to NDJSON.
"""
