"""Quality and dedup scoring as plain Python/numpy, reusable inside and outside Beam."""
