"""``python -m cavkit`` (and ``torchrun -m cavkit train ...``)."""

from cavkit.cli import main

if __name__ == "__main__":
    main()
