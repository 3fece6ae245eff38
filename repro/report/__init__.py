"""Aggregation of run records into figures, tables and the audit."""
