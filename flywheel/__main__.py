"""``python -m flywheel`` runs the CLI."""

from flywheel.cli import main

if __name__ == "__main__":
    main(prog_name="flywheel")
