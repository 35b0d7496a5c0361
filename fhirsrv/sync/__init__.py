"""Keeping other systems in step with the directory: rest-hook Subscriptions (push) and bulk
`$export`, both read through the same access policy and search engine as a search, the first
from the change log (fhirsrv/storage/changes.py). Above the interactions and below the api:
nothing here knows HTTP requests."""
