"""The terminology service: code systems, value sets and concept maps stored as resources."""
