"""Keeping other systems in step with the directory: rest-hook Subscriptions (push) and bulk
export, both read from the change log (fhirsrv/storage/changes.py)."""
