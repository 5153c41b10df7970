"""The five 2B policies: pydantic models, the active pack, digests and parameter_hash."""
