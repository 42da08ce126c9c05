"""bertclf: fine-tune a BERT-family checkpoint on a labelled CSV, export it, and serve it."""

# The one place the version lives: pyproject.toml reads it from here (dynamic version), and model
# folders, resume fingerprints and the OpenAPI document record it.
__version__ = "0.1.0"
