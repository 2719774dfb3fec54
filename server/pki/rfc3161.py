"""ASN.1 of RFC 3161 that asn1crypto gets wrong, shared by the TSA and its client."""

from __future__ import annotations

from asn1crypto import cms, tsp


class TimeStampResp(tsp.TimeStampResp):
    """RFC 3161 TimeStampResp; asn1crypto's declares the token mandatory, but rejections carry none."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]
