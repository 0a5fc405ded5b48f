"""Error families shared by every service.

Two families, as in arroyo: ``InvalidMessageError`` is permanent (bad data: dead-letter it,
never retry) and everything else raised from a handler is treated as transient (the batch is
nacked and redelivered). Messages never carry personal data.
"""


class SaisError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigurationError(SaisError):
    """A required setting, file or secret is missing or unusable."""


class MissingKeyEncryptionKeyError(ConfigurationError):
    """No key-encryption key was configured; nothing personal can be read or written."""


class KeyDestroyedError(SaisError):
    """The data key was destroyed by retention: the data it protected is gone for good."""


class UnknownKeyError(SaisError):
    """No data key with this id exists in the key store."""


class InvalidMessageError(SaisError):
    """A consumed message cannot be processed, now or ever; it goes to the dead-letter topic."""
