"""`python -m src.report ...`: see src/analysis/report.py."""
import sys

from src.config import ProjectError

try:
    from src.analysis.report import main
except ProjectError as err:  # a bad REPORT_* count, read as its module is imported
    sys.exit(f"error: {err}")

if __name__ == "__main__":
    sys.exit(main())
