"""FHIR search: index extraction at write time and compilation of queries to indexed SQL."""
