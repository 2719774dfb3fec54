"""A small closed-loop HTTP/1.1 load generator: N keep-alive clients, each one request at a time.

Bounded by construction: it connects to 127.0.0.1 only and stops at a fixed deadline. ``run_load`` sends
one request over and over and counts statuses; ``run_mixed`` spreads its clients round-robin over several
nodes (a client whose node stops answering moves to the next one, as a balancer would), cycles each client
through several kinds of request, checks every answer and keeps one :class:`Outcome` per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from asn1crypto import cms

from server.errors import SiegelError
from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml

HOST = "127.0.0.1"
RECONNECT_PAUSE = 0.05  # a client's pause after a refused connection before it tries the next node
SOAP_SIGN_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:siegel:dss:1.0:Sign"'}
DSS_SUCCESS = b"urn:oasis:names:tc:dss:1.0:resultmajor:Success"
CMS_TYPE = "urn:ietf:rfc:3369"
B_B = "http://uri.etsi.org/ades/191x2/level/baseline/B-B#"
DS = "http://www.w3.org/2000/09/xmldsig#"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
DSS_DEPTH = 64  # deepest nesting of a SOAP answer read for its dss:Result


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """Status, lower-cased head and body of one response (Content-Length or chunked)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                return status, head, b"".join(parts)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    return status, head, (await reader.readexactly(length) if length else b"")


def raw_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(port: int, raw: bytes, deadline: float, statuses: dict[int, int]) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(raw)
            status, _, _ = await _read_response(reader)
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
    finally:
        writer.close()
    return done


def run_load(host: str, port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: bytes = b"", clients: int = 8, seconds: float = 5.0) -> LoadResult:
    """Drive ``clients`` concurrent keep-alive connections for ``seconds`` and count the answers."""
    if host != HOST:
        raise ValueError(f"the load generator drives loopback servers only ({HOST}), not {host}")
    raw = raw_request(port, method, path, headers or {}, body)
    statuses: dict[int, int] = {}

    async def main() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(*(_client(port, raw, deadline, statuses) for _ in range(clients)))
        return sum(counts)

    started = time.monotonic()
    total = asyncio.run(main())
    return LoadResult(total, time.monotonic() - started, statuses)


# --- mixed load over several nodes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One kind of request; a good answer is a 200 whose body ``expect`` accepts."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    expect: Callable[[bytes], bool]


@dataclass(frozen=True)
class Outcome:
    """One request of :func:`run_mixed`: when it started (monotonic), how long it took, its status (0: no
    answer: the connection was refused, reset or cut before the whole answer arrived) and what it meant."""

    call: str
    port: int
    started: float
    seconds: float
    status: int
    ok: bool
    clean: bool  # ok, or a failure a client can act on: no answer at all, a status with a problem/SOAP fault,
    # or a DSS response whose Result is not Success and says why
    retry_after: bool  # the answer carried Retry-After
    result_major: str = ""  # a failed SOAP answer's DSS ResultMajor (its last part: ResponderError, ...)
    body: bytes = b""  # a good answer's body, when run_mixed was asked to keep them


def dss_result(body: bytes) -> tuple[str, str] | None:
    """The last part of the ResultMajor and the ResultMessage of the first ``dss:Result`` in a SOAP answer (a
    response's or a fault's detail); None when ``body`` is no XML or has none."""
    try:
        result = parse_xml(body, max_depth=DSS_DEPTH).find(f".//{{{DSS_NS}}}Result")
    except SiegelError:
        return None
    if result is None:
        return None
    major = (result.findtext(f"{{{DSS_NS}}}ResultMajor") or "").rsplit(":", 1)[-1]
    return major, (result.findtext(f"{{{DSS_NS}}}ResultMessage") or "").strip()


def _judge(call: Call, status: int, head: bytes, body: bytes) -> tuple[bool, bool, str]:
    """(ok, clean, DSS ResultMajor of a failed SOAP answer) of an answer. DSS answers an error with HTTP 200 and
    a non-Success Result: clean when its ResultMessage says why; a Success without the signature is not."""
    if status == 200 and call.expect(body):
        return True, True, ""
    soap = b"content-type: text/xml" in head
    result = dss_result(body) if soap else None
    if status == 200:
        clean = result is not None and result[0] not in ("", "Success") and bool(result[1])
        return False, clean, result[0] if result else ""
    problem = b"content-type: application/problem+json" in head and b'"status": %d' % status in body
    fault = soap and b"Fault>" in body
    return False, problem or fault, result[0] if result else ""


async def _mixed_client(index: int, ports: list[int], calls: list[Call], deadline: float,
                        outcomes: list[Outcome], keep_bodies: bool) -> None:
    """Client ``index``: starts on node ``index % len(ports)`` and call ``index % len(calls)``, then cycles."""
    node, turn = index % len(ports), index
    raws = {(port, call.name): raw_request(port, call.method, call.path, call.headers, call.body)
            for port in ports for call in calls}
    while time.monotonic() < deadline:
        port = ports[node]
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            node = (node + 1) % len(ports)
            await asyncio.sleep(RECONNECT_PAUSE)
            continue
        try:
            while time.monotonic() < deadline:
                call = calls[turn % len(calls)]
                turn += 1
                started = time.monotonic()
                writer.write(raws[(port, call.name)])
                try:
                    status, head, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError):
                    outcomes.append(Outcome(call.name, port, started, time.monotonic() - started, 0, False, True,
                                            False))
                    node = (node + 1) % len(ports)
                    break
                ok, clean, major = _judge(call, status, head, body)
                outcomes.append(Outcome(call.name, port, started, time.monotonic() - started, status, ok, clean,
                                        b"\r\nretry-after:" in head, major, body if ok and keep_bodies else b""))
                if b"connection: close" in head:
                    break
        finally:
            writer.close()


def run_mixed(ports: list[int], calls: list[Call], *, clients: int, seconds: float,
              keep_bodies: bool = False) -> tuple[list[Outcome], float]:
    """``clients`` keep-alive clients over ``ports`` for ``seconds``; every request's outcome (with the good
    answers' bodies when ``keep_bodies``), and the time taken."""

    async def main() -> list[Outcome]:
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_mixed_client(i, ports, calls, deadline, outcomes, keep_bodies)
                               for i in range(clients)))
        return outcomes

    started = time.monotonic()
    outcomes = asyncio.run(main())
    return outcomes, time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile ``share`` (0..1) of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize(outcomes: list[Outcome], seconds: float) -> dict[str, float]:
    """Requests, failures, throughput and latency percentiles (ms, of the good answers)."""
    good = [o.seconds for o in outcomes if o.ok]
    return {"requests": len(outcomes), "ok": len(good), "failed": len(outcomes) - len(good),
            "unclean": sum(not o.clean for o in outcomes),
            "requests_per_s": round(len(good) / seconds, 1) if seconds else 0.0,
            "p50_ms": round(percentile(good, 0.50) * 1000, 1), "p95_ms": round(percentile(good, 0.95) * 1000, 1),
            "p99_ms": round(percentile(good, 0.99) * 1000, 1)}


# --- the requests Siegel's load runs send -------------------------------------------------------------------

def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def soap_sign_request(request_id: str, documents: Sequence[bytes] = (b"load",)) -> bytes:
    """A SOAP 1.1 DSS SignRequest: CAdES B-B over one SHA-256 DocumentHash per entry of ``documents``."""
    hashes = "".join(
        f'<dss:DocumentHash RefURI="doc-{i}.bin"><ds:DigestMethod xmlns:ds="{DS}" Algorithm="{SHA256_URI}"/>'
        f'<ds:DigestValue xmlns:ds="{DS}">{base64.b64encode(hashlib.sha256(document).digest()).decode()}'
        "</ds:DigestValue></dss:DocumentHash>" for i, document in enumerate(documents))
    body = (f'<dss:SignRequest RequestID="{request_id}"><dss:OptionalInputs>'
            f"<dss:SignatureType>{CMS_TYPE}</dss:SignatureType>"
            "<dss:AdditionalProfile>urn:oasis:names:tc:dss:1.0:profiles:AdES</dss:AdditionalProfile>"
            f'<ades:SignatureForm xmlns:ades="urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#">{B_B}'
            f"</ades:SignatureForm></dss:OptionalInputs><dss:InputDocuments>{hashes}</dss:InputDocuments>"
            "</dss:SignRequest>")
    return (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}">'
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def signing_calls(user: str, password: str, signature: bytes) -> list[Call]:
    """SOAP Sign, REST sign (CAdES B-B) and REST Verify of ``signature`` (an enveloping CAdES the same
    account made): the mix the load benchmark and the fault tests drive."""
    auth = basic_auth(user, password)
    return [Call("soap-sign", "POST", "/dss", {**auth, **SOAP_SIGN_HEADERS}, soap_sign_request("load"),
                 lambda body: DSS_SUCCESS in body and body.count(b"Base64Signature Type=") == 1),
            Call("rest-sign", "POST", "/api/v1/sign?format=cades&level=B-B&packaging=enveloping",
                 {**auth, "Content-Type": "application/octet-stream"}, b"a document under load\n" * 20, is_cms),
            Call("verify", "POST", "/api/v1/verify", {**auth, "Content-Type": "application/octet-stream"},
                 signature, lambda body: b'"passed": true' in body)]


def is_cms(body: bytes) -> bool:
    """Whether ``body`` is a whole CMS SignedData (a cut-off one fails to parse)."""
    try:
        info = cms.ContentInfo.load(body, strict=True)
        return bool(info["content_type"].native == "signed_data" and info["content"]["signer_infos"].native)
    except ValueError:
        return False


def threaded_rate(call: Callable[[], object], *, threads: int, seconds: float) -> float:
    """Calls per second of ``threads`` threads calling ``call()`` in a loop for ``seconds`` (the raw
    HSM baselines the served rates are compared with)."""
    deadline = time.monotonic() + seconds

    def loop() -> int:
        done = 0
        while time.monotonic() < deadline:
            call()
            done += 1
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.monotonic() - started)
