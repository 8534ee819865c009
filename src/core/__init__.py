"""The core steps: data -> model -> train -> evaluate. No MLflow here."""
