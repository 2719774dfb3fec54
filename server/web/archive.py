"""``/api/v1/archive``: the long-term archive over REST (:class:`server.archive.service.ArchiveService`).

``/objects``: list (GET, ``?limit=&page=``) and submit (POST ``{"items": [{"name", "mimeType", "content" (base64)
| "digests" ({algorithm: hex})}], "metadata"}``: documents, or only their hashes); ``/objects/{aoid}``: the object
(GET), its deletion with a logged reason (DELETE ``{"reason"}``); ``/objects/{aoid}/evidence``: an item's evidence
record, RFC 4998 ERS (DER) or RFC 6283 XMLERS (``?format=ers|xml&item=&version=&seal=``); ``/objects/{aoid}/items/{n}``:
an archived document; ``/verify``: an object's evidence against what it archived (``{"aoid"}``), or a given record
against a document or hash (``{"record", "data" | "digests"}``); ``/stats``; ``/renew`` (timestamps, hash trees).

ROUTES (server.web.auth) gives each path its Action; the service decides ownership. Another account's object is
answered as one that does not exist (404), not 403: an AOID says nothing about whose it is.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable, TypeVar

from twisted.web import resource

from server.archive.service import ArchiveItem, ArchiveService, _iso, _worst
from server.db.models import ARCHIVE_ALGORITHMS
from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed
from server.identity.users import Principal
from server.web.http import json_response
from server.web.twofactor import _body as json_body
from server.web.workflows import _Endpoint, _number, _query

T = TypeVar("T")
_AOID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MIME = re.compile(r"[\w.+-]+/[\w.+-]+", re.ASCII)  # a stored MIME type safe to send back as the Content-Type
_MEDIA = {"ers": (b"application/octet-stream", "ers"), "xml": (b"application/xml", "xml")}
_PAGE = 50
_PAGE_MAX = 200


def _aoid(text: bytes | str) -> str:
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if not isinstance(value, str) or not _AOID.fullmatch(value):
        raise SiegelError(Code.BAD_REQUEST, f"{value!r} is not an archive object id (1-32 of A-Z a-z 0-9 _ -)")
    return value


def _visible(principal: Principal, aoid: str, action: Action, call: Callable[[], T]) -> T:
    """``call()``; a refusal for ownership alone (the role may ``action`` on its own objects) becomes NOT_FOUND."""
    try:
        return call()
    except SiegelError as exc:
        if exc.code is Code.FORBIDDEN and allowed(principal, action):
            raise SiegelError(Code.NOT_FOUND, f"no archive object {aoid!r}") from None
        raise


def _optional_number(request: Any, name: str) -> int | None:
    text = _query(request, name)
    return _number(text.encode(), name) if text else None


def _flag(request: Any, name: str, default: bool) -> bool:
    text = _query(request, name).lower()
    if not text:
        return default
    if text not in ("true", "false"):
        raise SiegelError(Code.BAD_REQUEST, f"{name} {text!r}: expected true or false")
    return text == "true"


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise SiegelError(Code.BAD_REQUEST, f"{what}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SiegelError(Code.BAD_REQUEST, f"{what}: not valid base64") from None


def _digests(value: Any, what: str) -> dict[str, bytes]:
    if not isinstance(value, dict) or not value:
        raise SiegelError(Code.BAD_REQUEST, f"{what}: expected an object of hash algorithm → hex hash value "
                                            f"({', '.join(ARCHIVE_ALGORITHMS)})")
    out = {}
    for algorithm, text in value.items():
        try:
            out[str(algorithm).lower()] = bytes.fromhex(text)
        except (TypeError, ValueError):
            raise SiegelError(Code.BAD_REQUEST, f"{what}: the {algorithm} value is not a hex string") from None
    return out


def _text(entry: dict[str, Any], key: str, default: str, what: str) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise SiegelError(Code.BAD_REQUEST, f"{what}: {key} must be a string")
    return value


def _items(body: dict[str, Any]) -> list[ArchiveItem]:
    """The submission's items, every one checked before anything is stored."""
    entries = body.get("items")
    if not isinstance(entries, list) or not entries:
        raise SiegelError(Code.BAD_REQUEST, "items: expected a list of {name, mimeType, content | digests}")
    items = []
    for n, entry in enumerate(entries, 1):
        what = f"item {n}"
        if not isinstance(entry, dict):
            raise SiegelError(Code.BAD_REQUEST, f"{what}: expected an object {{name, mimeType, content | digests}}")
        content = _base64(entry["content"], f"{what} content") if "content" in entry else None
        digests = _digests(entry["digests"], f"{what} digests") if "digests" in entry else {}
        if content is None and not digests:
            raise SiegelError(Code.BAD_REQUEST, f"{what}: give its content (base64) or its digests")
        items.append(ArchiveItem(_text(entry, "name", "document", what),
                                 _text(entry, "mimeType", "application/octet-stream", what), content, digests))
    return items


def _download(request: Any, ctype: bytes, name: str, content: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", ctype)
    request.setHeader(b"content-disposition", f'attachment; filename="{name}"'.encode("ascii"))
    request.setHeader(b"cache-control", b"no-store")
    return content


def _pick(count: int, item: int | None, aoid: str) -> int:
    """The 0-based index of ``item`` (1-based; may be left out when the version has one item)."""
    if item is None:
        if count != 1:
            raise SiegelError(Code.BAD_REQUEST, f"archive object {aoid!r} has {count} items in this version: "
                                                f"choose one with item=1..{count}")
        return 0
    if item > count:
        raise SiegelError(Code.NOT_FOUND, f"archive object {aoid!r} has no item {item} (it has {count})")
    return item - 1


class ArchiveRoot(resource.Resource):
    """The tree under ``/api/v1/archive``."""

    def __init__(self, service: ArchiveService) -> None:
        super().__init__()
        self._service = service
        self.putChild(b"objects", _Objects(service))
        self.putChild(b"stats", _Endpoint({b"GET": lambda r: json_response(r, 200, service.stats(r.principal))}))
        self.putChild(b"verify", _Endpoint({b"POST": self._verify}))
        self.putChild(b"renew", _Endpoint({b"POST": self._renew}))

    def _verify(self, request: Any) -> bytes:
        body = json_body(request)
        if "aoid" in body:
            if "record" in body:
                raise SiegelError(Code.BAD_REQUEST, "give aoid, or record with data or digests (not both)")
            return json_response(request, 200, self._verify_object(request.principal, body))
        if "record" not in body or not ("data" in body or "digests" in body):
            raise SiegelError(Code.BAD_REQUEST, "give aoid, or record (base64) with data (base64) or digests")
        record = _base64(body["record"], "record")
        data = _base64(body["data"], "data") if "data" in body else None
        digests = _digests(body["digests"], "digests") if "digests" in body else None
        return json_response(request, 200, self._service.verify(record, data=data, digests=digests).to_json())

    def _verify_object(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Each item's evidence record (of the newest or the given version) against its document or hashes."""
        aoid, fmt, version = _aoid(body["aoid"]), body.get("format", "ers"), body.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise SiegelError(Code.BAD_REQUEST, "version: expected a number from 1")
        records = _visible(principal, aoid, Action.ARCHIVE_READ, lambda: self._service.evidence(
            principal, aoid, fmt if isinstance(fmt, str) else "", version=version))
        items = self._service.retrieve(principal, aoid, version)
        reports = [self._service.verify(record, data=content, digests=None if content is not None else item.digests)
                   for record, (item, content) in zip(records, items)]
        return {"aoid": aoid, "indication": _worst([r.indication for r in reports]).value,
                "items": [{"name": item.name, "report": report.to_json()}
                          for (item, _), report in zip(items, reports)]}

    def _renew(self, request: Any) -> bytes:
        body = json_body(request)
        timestamps, force, hashtree = body.get("timestamps", False), body.get("force", False), body.get("hashtree")
        if not isinstance(timestamps, bool) or not isinstance(force, bool):
            raise SiegelError(Code.BAD_REQUEST, "timestamps and force: expected true or false")
        if hashtree is not None and hashtree not in ARCHIVE_ALGORITHMS:
            raise SiegelError(Code.BAD_REQUEST, f"hashtree {hashtree!r}: expected one of {', '.join(ARCHIVE_ALGORITHMS)}")
        return json_response(request, 200, self._service.renew(timestamps=timestamps or hashtree is None,
                                                                hashtree=hashtree, force=force))


class _Objects(resource.Resource):
    """``/archive/objects``: list (GET), submit (POST); ``/{aoid}`` an object."""

    def __init__(self, service: ArchiveService) -> None:
        super().__init__()
        self._service = service

    def render(self, request: Any) -> Any:
        return _Endpoint({b"GET": self._list, b"POST": self._submit}).render(request)

    def _list(self, request: Any) -> bytes:
        limit = _optional_number(request, "limit") or _PAGE
        page = _optional_number(request, "page") or 1
        if limit > _PAGE_MAX:
            raise SiegelError(Code.BAD_REQUEST, f"limit {limit}: at most {_PAGE_MAX}")
        total, objects = self._service.list_objects(request.principal, limit, (page - 1) * limit)
        return json_response(request, 200, {"total": total, "page": page, "limit": limit, "objects": [
            {"aoid": o.aoid, "state": o.state, "created": _iso(o.created_at), "version": len(o.versions),
             "items": len(o.versions[-1].items)} for o in objects]})

    def _submit(self, request: Any) -> bytes:
        body = json_body(request)
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            raise SiegelError(Code.BAD_REQUEST, "metadata: expected an object of names and string values")
        info = self._service.submit(request.principal, _items(body), metadata)
        request.setHeader(b"location", f"/api/v1/archive/objects/{info.aoid}".encode())
        return json_response(request, 201, info.to_json())

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return _Object(self._service, path)


class _Object(resource.Resource):
    """``/archive/objects/{aoid}``: GET, DELETE; ``/evidence``; ``/items/{n}``."""

    def __init__(self, service: ArchiveService, path: bytes) -> None:
        super().__init__()
        self._service = service
        self._path = path

    def render(self, request: Any) -> Any:
        return _Endpoint({b"GET": self._info, b"DELETE": self._delete}).render(request)

    def _info(self, request: Any) -> bytes:
        aoid = _aoid(self._path)
        info = _visible(request.principal, aoid, Action.ARCHIVE_READ,
                        lambda: self._service.info(request.principal, aoid))
        return json_response(request, 200, info.to_json())

    def _delete(self, request: Any) -> bytes:
        aoid, reason = _aoid(self._path), json_body(request).get("reason")
        if not isinstance(reason, str):
            raise SiegelError(Code.BAD_REQUEST, "a deletion needs a reason (a string; it is logged)")
        _visible(request.principal, aoid, Action.ARCHIVE_DELETE,
                 lambda: self._service.delete(request.principal, aoid, reason))
        return json_response(request, 200, {"aoid": aoid, "state": "deleted", "reason": reason})

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        if path == b"evidence":
            return _Endpoint({b"GET": self._evidence})
        if path == b"items" and len(request.postpath) == 1:
            item = request.postpath.pop(0)
            return _Endpoint({b"GET": lambda r: self._content(r, item)})
        return _Endpoint({})

    def _evidence(self, request: Any) -> bytes:
        aoid, fmt = _aoid(self._path), _query(request, "format") or "ers"
        version, item = _optional_number(request, "version"), _optional_number(request, "item")
        seal = _flag(request, "seal", True)
        records = _visible(request.principal, aoid, Action.ARCHIVE_READ, lambda: self._service.evidence(
            request.principal, aoid, fmt, seal=seal, version=version))
        index = _pick(len(records), item, aoid)
        ctype, suffix = _MEDIA[fmt]
        return _download(request, ctype, f"{aoid}-{index + 1}.{suffix}", records[index])

    def _content(self, request: Any, item: bytes) -> bytes:
        aoid, number = _aoid(self._path), _number(item, "item")
        version = _optional_number(request, "version")
        items = _visible(request.principal, aoid, Action.ARCHIVE_READ,
                         lambda: self._service.retrieve(request.principal, aoid, version))
        archived, content = items[_pick(len(items), number, aoid)]
        if content is None:
            raise SiegelError(Code.NOT_FOUND, f"item {number} of archive object {aoid!r} was archived as hashes "
                                              "only: there is no document to return")
        ctype = archived.mime_type if _MIME.fullmatch(archived.mime_type) else "application/octet-stream"
        return _download(request, ctype.encode("ascii"), f"{aoid}-{number}", content)
