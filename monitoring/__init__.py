"""Driftline: Spark-native model monitoring."""

__version__ = "0.1.0"
