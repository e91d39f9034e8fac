"""Models of percep_det. Every module that registers something is imported here."""
