"""``python -m omnict_cli`` runs the same command line as ``omnict``."""

from omnict_cli.cli import main

if __name__ == "__main__":
    main()
