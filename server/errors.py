"""The one error type of the domain, with stable codes.

Every layer raises :class:`SiegelError` (or a subclass). Each code maps to a DSS
ResultMajor/ResultMinor pair, an HTTP status and a human message, so that SOAP
faults, RFC 9457 problem documents and CLI messages say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DSS_MAJOR = "urn:oasis:names:tc:dss:1.0:resultmajor:"
DSS_MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
SIEGEL_MINOR = "urn:siegel:dss:1.0:resultminor:"
"""Siegel's ResultMinor URIs where DSS core names none as specific."""


@dataclass(frozen=True)
class ErrorKind:
    """What a code means on every transport."""

    major: str
    minor: str | None
    http_status: int
    title: str


class Code(Enum):
    """Stable error codes; the value is the slug used in problem-type URIs and logs."""

    BAD_REQUEST = "bad-request"
    MALFORMED_XML = "malformed-xml"
    HOSTILE_XML = "hostile-xml"
    SCHEMA_INVALID = "schema-invalid"
    REQUEST_TOO_LARGE = "request-too-large"
    NOT_SUPPORTED = "not-supported"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"
    CONFIG = "config"
    HSM_UNAVAILABLE = "hsm-unavailable"
    HSM_LOGIN = "hsm-login"
    KEY_NOT_FOUND = "key-not-found"
    DATABASE = "database"
    TSA_FAILED = "tsa-failed"
    REMOTE_SIGNING_FAILED = "remote-signing-failed"
    DIRECTORY_UNAVAILABLE = "directory-unavailable"
    STORAGE_FULL = "storage-full"
    INTERNAL = "internal"


KINDS: dict[Code, ErrorKind] = {
    Code.BAD_REQUEST: ErrorKind(DSS_MAJOR + "RequesterError", None, 400, "Bad request"),
    Code.MALFORMED_XML: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "NotParseableXMLDocument", 400, "Malformed XML"),
    Code.HOSTILE_XML: ErrorKind(DSS_MAJOR + "RequesterError", SIEGEL_MINOR + "ForbiddenXmlConstruct", 400, "Forbidden XML construct"),
    Code.SCHEMA_INVALID: ErrorKind(DSS_MAJOR + "RequesterError", SIEGEL_MINOR + "RequestNotSchemaValid", 400, "Request does not match the schema"),
    Code.REQUEST_TOO_LARGE: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "GeneralError", 413, "Request too large"),
    Code.NOT_SUPPORTED: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "NotSupported", 501, "Not supported"),
    Code.UNAUTHENTICATED: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "AuthenticationError", 401, "Authentication required"),
    Code.FORBIDDEN: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "AuthenticationError", 403, "Forbidden"),
    Code.NOT_FOUND: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "GeneralError", 404, "Not found"),
    Code.CONFLICT: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "GeneralError", 409, "Conflict"),
    Code.CONFIG: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 500, "Configuration error"),
    Code.HSM_UNAVAILABLE: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 503, "HSM unavailable"),
    Code.HSM_LOGIN: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 503, "HSM login failed"),
    Code.KEY_NOT_FOUND: ErrorKind(DSS_MAJOR + "RequesterError", DSS_MINOR + "invalid:KeyLookupFailed", 404, "Key not found"),
    Code.DATABASE: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 503, "Database unavailable"),
    Code.DIRECTORY_UNAVAILABLE: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 503, "Directory unavailable"),
    Code.TSA_FAILED: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 502, "Timestamp authority failed"),
    Code.REMOTE_SIGNING_FAILED: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 502, "Remote signing service failed"),
    Code.STORAGE_FULL: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 507, "Insufficient storage"),
    Code.INTERNAL: ErrorKind(DSS_MAJOR + "ResponderError", DSS_MINOR + "GeneralError", 500, "Internal error"),
}


class SiegelError(Exception):
    """An error with a stable code and a message meant for the caller."""

    def __init__(self, code: Code, message: str, minor: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.minor = minor  # a ResultMinor more specific than the code's

    @property
    def kind(self) -> ErrorKind:
        return KINDS[self.code]

    @property
    def result_minor(self) -> str | None:
        """The DSS ResultMinor: the specific one given, else the code's."""
        return self.minor or self.kind.minor

    def __str__(self) -> str:
        return self.message


class ConfigError(SiegelError):
    """A setting is wrong; the message names the setting and the expected form."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.CONFIG, message)
