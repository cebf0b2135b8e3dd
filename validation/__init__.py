"""Three-level validation, comparisons and the run report."""
