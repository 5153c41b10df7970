"""Contracts as code: the dataset dictionary, schema packs and table schemas in ``contracts/``."""
