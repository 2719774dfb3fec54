"""The minimal inputs of what the fuzz harnesses found, each answered with a clean refusal now; and the
harnesses' watchdog."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from server.errors import Code, SiegelError
from server.validation.asic import verify_asic
from server.validation.model import Trust
from server.web import auth, remote_signing, rest, twofactor
from tests.fuzz.runner import Hang, watchdog
from tests.fuzz.targets import RestRequest

pytestmark = pytest.mark.unit


def _container_with_central_directory_offset_moved(by: int) -> bytes:
    """A one-entry ASiC start (``mimetype`` stored) whose end record names the central directory ``by``
    bytes later than it lies: zipfile then seeks to a negative local header offset."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.etsi.asic-e+zip")
    data = bytearray(buffer.getvalue())
    end = len(data) - 22  # the end of central directory record, without a comment
    (offset,) = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<I", data, end + 16, offset + by)
    return bytes(data)


def test_a_zip_whose_offsets_point_before_its_start_is_a_bad_container() -> None:
    data = _container_with_central_directory_offset_moved(0x01000000)
    with pytest.raises(SiegelError) as refused:
        verify_asic(data, Trust((), False, None), max_bytes=1 << 20)
    assert refused.value.code is Code.BAD_REQUEST and "not a readable ZIP" in refused.value.message


def test_a_stored_entry_that_claims_deflate_data_it_lacks_is_a_bad_container() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.etsi.asic-e+zip")
        archive.writestr("data.txt", b"x" * 4096, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(buffer.getvalue())
    start = data.index(b"data.txt") + len(b"data.txt")  # the deflate stream of the second entry
    data[start:start + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(SiegelError) as refused:
        verify_asic(bytes(data), Trust((), False, None), max_bytes=1 << 20)
    assert refused.value.code is Code.BAD_REQUEST


JSON_READERS = {"rest": rest._json_object, "auth": auth._json_object, "twofactor": twofactor._body,
                "remote_signing": remote_signing._body}
"""Every JSON body reader of the REST resources (csc.py has its own: tests/fuzz/findings/)."""


@pytest.mark.parametrize("reader", sorted(JSON_READERS))
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000], ids=["array", "object"])
def test_json_nested_deeper_than_the_stack_is_a_bad_request(body: bytes, reader: str) -> None:
    request = RestRequest(io.BytesIO(body), {}, {})
    with pytest.raises(SiegelError) as refused:
        JSON_READERS[reader](request)
    assert refused.value.code is Code.BAD_REQUEST


@pytest.mark.parametrize("spin", ["cpu", "sleep"])
def test_the_watchdog_reports_an_input_that_runs_past_its_bound(spin: str) -> None:
    started = time.monotonic()
    with pytest.raises(Hang):
        with watchdog(0.2):
            while time.monotonic() - started < 10:
                if spin == "sleep":
                    time.sleep(0.01)
    assert time.monotonic() - started < 5
    with watchdog(0.2):  # a quick block passes, and the timers are off afterwards
        pass
    time.sleep(0.3)
