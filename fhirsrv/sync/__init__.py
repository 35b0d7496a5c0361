"""How platforms keep a copy of the directory in step: bulk `$export` (export_*.py) and
subscriptions. Above the interactions and below the api: it reads through the same access
policy and search engine as a search does, and knows nothing of HTTP."""
