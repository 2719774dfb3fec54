"""Outgoing text messages (SMS OTP) through a provider's HTTP API."""

from adapters.sms.http import HttpSmsGateway

__all__ = ["HttpSmsGateway"]
