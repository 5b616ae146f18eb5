"""`python -m cegate_cli` (and `torchrun -m cegate_cli`) run the same CLI as `cegate`."""

from cegate_cli.cli import main

if __name__ == "__main__":
    main()
