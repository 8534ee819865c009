"""Tracking: the MLflow store, run lifecycle, and what each run logs."""
