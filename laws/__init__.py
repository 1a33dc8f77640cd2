"""Repetition-aware quality-quantity scaling laws: models, fitting and planning (numpy/scipy only)."""
