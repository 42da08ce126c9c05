"""bertclf: fine-tune a BERT-family checkpoint on a labelled CSV, export it, and serve it."""

__version__ = "0.1.0"
