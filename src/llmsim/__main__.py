"""`python -m llmsim ...` runs the command-line interface (the same as the `llmsim` command)."""

from .cli import main

if __name__ == "__main__":
    main()
