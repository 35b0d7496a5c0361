"""Versioned resource storage (SQLite and PostgreSQL through SQLAlchemy Core)."""
