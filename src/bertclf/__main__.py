"""`python -m bertclf ...` runs the command-line interface."""

from bertclf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
