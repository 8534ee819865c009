"""`python -m src.report ...`: see src/analysis/report.py."""
import sys

from src.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
