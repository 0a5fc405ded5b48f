"""Why delivery refuses to send. Each is raised before anything leaves the system."""

from sais_shared.errors import SaisError


class DeliveryRefusedError(SaisError):
    """Delivery would break the protocol or cannot be done safely; nothing was sent."""


class RecipientNotAllowedError(DeliveryRefusedError):
    """The recipient's domain is not allow-listed (ISP §7.2, §8.2, §8.3)."""


class TransferMethodNotAllowedError(DeliveryRefusedError):
    """Only S/MIME email over SMTP with STARTTLS is allowed (ISP §8.3)."""


class SharingSuspendedError(DeliveryRefusedError):
    """Sharing is suspended (ISP §16.4) until an operator resumes it."""


class StaleDataError(DeliveryRefusedError):
    """Data held for longer than the staleness limit (ISP §9.5): obtain a refreshed extract."""


class CertificateError(DeliveryRefusedError):
    """A sender or recipient certificate is missing, expired or does not fit."""


class ReviewOverdueError(DeliveryRefusedError):
    """The protocol is past its review date (ISP §15) and no override was given."""


class UncertainDeliveryError(DeliveryRefusedError):
    """A send was interrupted after the message went to the server: an operator must resolve it."""


class NothingToResolveError(DeliveryRefusedError):
    """The batch has no part interrupted mid-send: never attempted, already settled, or unknown."""


class NothingToDeliverError(DeliveryRefusedError):
    """No cohort records for this window and academic year."""


class DeliveryFailedError(SaisError):
    """The mail server refused a message permanently (5xx): sending the same message again cannot succeed."""


class PartTooLargeError(DeliveryFailedError):
    """A rendered part is over the maximum message size; nothing was sent."""


class SmtpTransientError(SaisError):
    """The SMTP server could not be reached or deferred the message; retry later."""


class SmtpRejectedError(DeliveryFailedError):
    """The SMTP server refused the message or the login permanently (5xx): retrying cannot help."""


class MessageMayHaveBeenSentError(SaisError):
    """The connection failed after the message data was sent: acceptance is unknown."""
