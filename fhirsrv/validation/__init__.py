"""Validation: structural (R4 models) and profile (StructureDefinitions) checks."""
