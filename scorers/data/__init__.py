"""Shipped data files of the scorers (default quality reference; see its JSON for provenance)."""
