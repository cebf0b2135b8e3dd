"""Block decisions: labels derived from ground truth, the feature tables, the models and the final mask."""
