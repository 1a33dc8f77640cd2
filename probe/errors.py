"""The probe's user-facing error."""


class ProbeError(ValueError):
    """A probe request that cannot be carried out: a run directory without pools, a pool too
    small for the design, an unreadable target file, an unknown proxy size or device (the CLI
    prints it as one line)."""
