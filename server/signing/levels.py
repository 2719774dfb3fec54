"""What every format engine shares: the ETSI baseline levels and the packagings of a signature."""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    """ETSI baseline levels (EN 319 122 / 132 / 142), in ascending order."""

    B_B = "B-B"  # signed attributes/properties binding the signer's certificate
    B_T = "B-T"  # + a signature timestamp
    B_LT = "B-LT"  # + certificates and revocation values of the whole chain and the timestamps
    B_LTA = "B-LTA"  # + an archive timestamp over all of it

    def at_least(self, other: Level) -> bool:
        order = tuple(Level)
        return order.index(self) >= order.index(other)


class Packaging(StrEnum):
    """Where the signature sits relative to what it signs."""

    DETACHED = "detached"  # beside the data (the data, or only its digest, is elsewhere)
    ENVELOPING = "enveloping"  # the data inside the signature
    ENVELOPED = "enveloped"  # the signature inside the data (XML)
