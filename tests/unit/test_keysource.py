"""DigestInfo and ECDSA signature encodings, checked against what ``cryptography`` produces."""

from __future__ import annotations

import os

import pytest
from asn1crypto.algos import DigestInfo
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from server.errors import Code, SiegelError
from server.signing.keysource import (DigestAlgorithm, digest_info, ecdsa_der_to_raw, ecdsa_raw_to_der)

pytestmark = pytest.mark.unit

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _digest(alg: DigestAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(alg.hash())
    h.update(data)
    return h.finalize()


@pytest.mark.parametrize("alg", list(DigestAlgorithm))
def test_digest_info_is_what_cryptography_pads_into_pkcs1_v15(alg: DigestAlgorithm) -> None:
    message = os.urandom(100)
    signature = RSA_KEY.sign(message, padding.PKCS1v15(), alg.hash())
    numbers = RSA_KEY.public_key().public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    encoded = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(size, "big")
    expected = digest_info(_digest(alg, message), alg)
    # EMSA-PKCS1-v1_5: 00 01 FF..FF 00 DigestInfo
    assert encoded == b"\x00\x01" + b"\xff" * (size - len(expected) - 3) + b"\x00" + expected


@pytest.mark.parametrize("alg", list(DigestAlgorithm))
def test_digest_info_is_the_der_of_asn1_digest_info(alg: DigestAlgorithm) -> None:
    digest = _digest(alg, b"siegel")
    parsed = DigestInfo.load(digest_info(digest, alg))
    assert parsed["digest_algorithm"]["algorithm"].native == str(alg)
    assert parsed["digest_algorithm"]["parameters"].native is None
    assert parsed["digest"].native == digest
    assert parsed.dump(force=True) == digest_info(digest, alg)


def test_digest_info_refuses_a_digest_of_the_wrong_length() -> None:
    with pytest.raises(SiegelError) as err:
        digest_info(bytes(32), DigestAlgorithm.SHA384)
    assert err.value.code is Code.BAD_REQUEST and "48 bytes" in err.value.message


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=lambda c: c.name)
def test_ecdsa_der_and_raw_convert_both_ways(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    message = b"hash, sign, assemble"
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    raw = ecdsa_der_to_raw(der, curve)
    size = (curve.key_size + 7) // 8
    r, s = utils.decode_dss_signature(der)
    assert raw == r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert ecdsa_raw_to_der(raw) == der
    key.public_key().verify(ecdsa_raw_to_der(raw), message, ec.ECDSA(hashes.SHA256()))


def test_ecdsa_small_values_are_padded_in_raw_and_minimal_in_der() -> None:
    der = utils.encode_dss_signature(1, 2)
    assert der == bytes.fromhex("3006020101020102")
    raw = ecdsa_der_to_raw(der, ec.SECP256R1())
    assert raw == bytes(31) + b"\x01" + bytes(31) + b"\x02"
    assert ecdsa_raw_to_der(raw) == der


def test_ecdsa_high_bit_gets_a_leading_zero_in_der() -> None:
    raw = b"\x80" + bytes(31) + b"\x7f" + bytes(31)
    der = ecdsa_raw_to_der(raw)
    assert utils.decode_dss_signature(der) == (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert der[2:5] == b"\x02\x21\x00"  # INTEGER of 33 bytes: 00 then 80...


def test_ecdsa_conversion_refuses_malformed_input() -> None:
    with pytest.raises(SiegelError) as odd:
        ecdsa_raw_to_der(bytes(63))
    assert odd.value.code is Code.BAD_REQUEST
    with pytest.raises(SiegelError) as not_der:
        ecdsa_der_to_raw(b"\x01\x02", ec.SECP256R1())
    assert not_der.value.code is Code.BAD_REQUEST
    too_big = utils.encode_dss_signature(2**300, 1)
    with pytest.raises(SiegelError) as wrong_curve:
        ecdsa_der_to_raw(too_big, ec.SECP256R1())
    assert "secp256r1" in wrong_curve.value.message


def test_digest_algorithm_from_hash_refuses_sha1() -> None:
    assert DigestAlgorithm.from_hash(hashes.SHA512()) is DigestAlgorithm.SHA512
    with pytest.raises(SiegelError) as err:
        DigestAlgorithm.from_hash(hashes.SHA1())
    assert err.value.code is Code.NOT_SUPPORTED


def test_digest_algorithms_may_be_given_by_name() -> None:
    digest = _digest(DigestAlgorithm.SHA512, b"siegel")
    assert digest_info(digest, "sha512") == digest_info(digest, DigestAlgorithm.SHA512)
    with pytest.raises(SiegelError) as err:
        digest_info(bytes(20), "sha1")
    assert err.value.code is Code.NOT_SUPPORTED and "sha1" in err.value.message
