"""What every format engine shares: the ETSI baseline levels and the packagings of a signature."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """ETSI baseline levels (EN 319 122 / 132 / 142), in ascending order."""

    B_B = "B-B"  # signed attributes/properties binding the signer's certificate
    B_T = "B-T"  # + a signature timestamp
    B_LT = "B-LT"  # + certificates and revocation values of the whole chain and the timestamps
    B_LTA = "B-LTA"  # + an archive timestamp over all of it

    def at_least(self, other: Level) -> bool:
        return _RANK[self] >= _RANK[other]


_RANK = {level: rank for rank, level in enumerate(Level)}


class Packaging(StrEnum):
    """Where the signature sits relative to what it signs."""

    DETACHED = "detached"  # beside the data (the data, or only its digest, is elsewhere)
    ENVELOPING = "enveloping"  # the data inside the signature
    ENVELOPED = "enveloped"  # the signature inside the data (XML)


@dataclass(frozen=True)
class ProductionPlace:
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None  # ISO 3166 code or name


@dataclass(frozen=True)
class SignatureProperties:
    """What a signer may claim in the signed properties/attributes of any format (DSS ``Properties``)."""

    claimed_role: str | None = None
    commitment_type: str | None = None  # an ETSI URI, e.g. http://uri.etsi.org/01903/v1.2.2#ProofOfApproval
    production_place: ProductionPlace | None = None
    reason: str | None = None  # PAdES /Reason; XAdES/CAdES: a commitment-type qualifier (or description)
