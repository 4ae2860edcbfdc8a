"""Typed errors the services raise; entrypoints map each type to one HTTP status."""


class DomainError(Exception):
    """Base of every error a user can be told about."""

    code = "error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param  # the request parameter at fault, when one is


class InvalidInput(DomainError):
    code = "invalid_input"


class NotFound(DomainError):
    code = "not_found"


class UnreachableUrl(DomainError):
    code = "unreachable_url"


class Interrupted(UnreachableUrl):
    """The origin stopped sending part-way through a body (a stall, a dropped connection, fewer
    bytes than it announced): worth resuming with a Range request where the origin allows it."""

    def __init__(self, message: str, *, received: int = 0):
        super().__init__(message)
        self.received = received  # bytes of the body received before it stopped


class UnsupportedContentType(DomainError):
    code = "unsupported_content_type"


class ContentTooLarge(DomainError):
    code = "content_too_large"


class Unauthorized(DomainError):
    code = "unauthorized"


class Conflict(DomainError):
    code = "conflict"


class ExtractionFailed(DomainError):
    """The bytes were fetched but hold no text we can index (permanent)."""

    code = "extraction_failed"


class UpstreamUnavailable(DomainError):
    """A dependency (store, queue, model API) failed in a way worth retrying."""

    code = "upstream_unavailable"
