"""Value objects and window arithmetic: the bottom of core/ (imports nothing of core but errors)."""
