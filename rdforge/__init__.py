"""rdforge: reproducible systemd initrds built from a distribution's signed packages."""

__version__ = "0.1.0"
