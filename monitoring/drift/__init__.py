"""Drift: distributions rebuilt from stored states, univariate methods, and the comparisons."""
