"""Realism certification: metrics (certification.md §3), gates (§4), verdicts (§7)."""
