"""Analysis of runs read back from MLflow: comparisons, statistics, reports."""
