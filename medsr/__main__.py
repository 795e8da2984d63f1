"""``python -m medsr ...`` (and ``torchrun --nproc_per_node N -m medsr train ...``)."""

from medsr.cli.main import main

if __name__ == "__main__":
    main()
