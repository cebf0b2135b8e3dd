"""Ray orchestration (the only place that imports ray)."""
