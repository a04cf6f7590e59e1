"""``python -m equireg`` (and ``torchrun -m equireg train ...``)."""

from equireg.cli.main import main

main()
