"""RFC 3161 timestamp client with failover over several TSAs, and checks of timestamp tokens."""

from adapters.timestamp.client import (
    InvalidToken,
    ResponseStatus,
    TimestampClient,
    TimestampError,
    TimestampToken,
    TsaEndpoint,
    TstInfo,
    build_request,
    client_from_settings,
    endpoint_from_url,
    parse_response,
    verify_token,
)

__all__ = [
    "InvalidToken", "ResponseStatus", "TimestampClient", "TimestampError", "TimestampToken", "TsaEndpoint",
    "TstInfo", "build_request", "client_from_settings", "endpoint_from_url", "parse_response", "verify_token",
]
