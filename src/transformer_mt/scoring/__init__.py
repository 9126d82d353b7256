"""Scores as sacreBLEU computes them, with their signatures (`metrics`)."""
