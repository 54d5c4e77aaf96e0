"""One exception type per kind of user mistake; cli.py prints them as one line."""


class RdforgeError(Exception):
    """Base of every error that is the user's input or environment, not a bug."""


class ConfigError(RdforgeError):
    """A malformed configuration file, an unknown key or a bad value."""


class SourceError(RdforgeError):
    """The package archive could not be read, verified or reached."""


class SignatureError(SourceError):
    """Signed metadata failed verification (bad, missing or stale signature)."""


class HashMismatch(SourceError):
    """Downloaded or cached content does not match the hash the archive signed."""


class ResolveError(RdforgeError):
    """A package is unknown or its dependencies cannot be satisfied."""


class LockError(RdforgeError):
    """The lock file is missing, malformed or cannot be honoured."""


class FormatError(RdforgeError):
    """An input file is not in the format it claims (deb, ELF, cpio, ...)."""


class CheckError(RdforgeError):
    """The static check of an image found something missing."""


class KernelError(RdforgeError):
    """The requested kernel or its modules cannot be found."""


class BootError(RdforgeError):
    """A boot under the harness failed, timed out or reached the emergency target."""


class KeyMaterialError(RdforgeError):
    """A signing key or certificate is missing, malformed or does not match."""


class SysextError(RdforgeError):
    """A system extension cannot be built from what was asked."""


class ContentError(RdforgeError):
    """A package's content breaks the content policy (too large a file or image)."""
