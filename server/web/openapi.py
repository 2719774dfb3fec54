"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from server import __version__

_PROBLEM = {"description": "RFC 9457 problem document",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_CMS = {"application/pkcs7-signature": {"schema": {"type": "string", "format": "binary"}}}
_LEVEL = {"type": "string", "enum": ["B-B", "B-T", "B-LT", "B-LTA"], "default": "B-T"}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DIGEST = {
    "digestAlgorithm": {"type": "string", "enum": ["SHA-256", "SHA-384", "SHA-512"]},
    "digest": {"type": "string", "contentEncoding": "base64", "description": "the document's digest"},
}


_OTP = {"name": "X-Siegel-OTP", "in": "header", "schema": {"type": "string"},
        "description": "the second factor (TOTP, recovery or sent code) of accounts whose role needs one "
                       "(setting twofactor.required_roles); any route"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _PROBLEM for status in statuses}


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_STATUS = {"description": "the workflow: state, template version, document revision, each step with its assignees "
                          "(state, action, when, authentication level, address, verification of their signature)",
           "content": _JSON_OBJECT}
_DEFINITION = {"type": "object", "description": "steps (ordered; each: name, assignee {user} | {group, mode any|every} | "
                                                "{external: address or {{variable}}, name}, action sign|approve|copy, "
                                                "auth link|password|password+2fa, signature {format pades, level, field "
                                                "| page + box, appearance, keySource internal|remote, remoteService}, "
                                                "deadlineHours, remindAfterHours, fourEyesWith), starters {roles, "
                                                "users, groups}, description"}
_BRAND = {"type": ["string", "null"], "description": "a brand's name (siegel brand list); null or \"default\": the "
                                                    "default brand. Its pages, mails and stamps take it "
                                                    "(an API client's own brand goes first)"}
_LINK_TOKEN = {"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
               "description": "the token of the invitation link"}
_WORKFLOW_PATHS: dict[str, dict[str, Any]] = {
    "/workflows": {"post": {
        "summary": "Start a workflow: a PDF through a template's current version; its first step becomes due",
        "requestBody": _json_body({"template": {"type": ["integer", "string"], "description": "id or name"},
                                   "document": {"type": "string", "contentEncoding": "base64"},
                                   "documentName": {"type": "string"},
                                   "variables": {"type": "object", "description": "values of the template's "
                                                                                  "{{variables}}, e.g. external addresses"}},
                                  ["template", "document"]),
        "responses": {"201": _STATUS, **_errors(400, 401, 403, 404, 409, 501)}}},
    "/workflows/templates": {
        "get": {"summary": "The workflow templates in use", "responses": {
            "200": {"description": "templates: id, name, version", "content": _JSON_OBJECT}, **_errors(401, 403)}},
        "post": {"summary": "Create a workflow template (version 1); every problem of the definition is named",
                 "requestBody": _json_body({"name": {"type": "string"}, "definition": _DEFINITION,
                                            "brand": _BRAND}, ["name", "definition"]),
                 "responses": {"201": {"description": "the template", "content": _JSON_OBJECT},
                               **_errors(400, 401, 403, 404, 409)}}},
    "/workflows/templates/{id}": {
        "get": {"summary": "A template with its current (or ?version=) definition", "parameters": [
            _ID, {"name": "version", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the template", "content": _JSON_OBJECT},
                              **_errors(400, 401, 403, 404)}},
        "put": {"summary": "A new version of the template (running workflows keep theirs), its brand, or both",
                "description": "Without definition no new version is made; an unknown brand (404, named) or a "
                               "wrong definition (400) changes nothing.",
                "parameters": [_ID],
                "requestBody": _json_body({"definition": _DEFINITION, "brand": _BRAND}, []),
                "responses": {"200": {"description": "the template", "content": _JSON_OBJECT},
                              **_errors(400, 401, 403, 404, 409)}},
        "delete": {"summary": "Retire the template: it starts no new workflows", "parameters": [_ID],
                   "responses": {"200": {"description": "the template", "content": _JSON_OBJECT},
                                 **_errors(400, 401, 403, 404)}}},
    "/workflows/inbox": {"get": {
        "summary": "The caller's steps that are due: workflow, step, action, deadline, sender, document",
        "responses": {"200": {"description": "steps", "content": _JSON_OBJECT}, **_errors(401, 403)}}},
    "/workflows/link": {
        "get": {"summary": "What an invitation link is for (the link stays unused)", "security": [],
                "parameters": [_LINK_TOKEN],
                "responses": {"200": {"description": "workflow, step, action, document URL", "content": _JSON_OBJECT},
                              **_errors(403)}},
        "post": {"summary": "Act with an invitation link: sign, approve or reject its one step (once, before it "
                            "expires; steps whose auth is link)", "security": [],
                 "requestBody": _json_body({"token": {"type": "string"},
                                            "action": {"type": "string", "enum": ["sign", "approve", "reject"]},
                                            "reason": {"type": "string", "description": "needed to reject"}},
                                           ["token", "action"]),
                 "responses": {"200": _STATUS, **_errors(400, 401, 403, 409)}}},
    "/workflows/link/document": {"get": {
        "summary": "The document an invitation link is for", "security": [], "parameters": [_LINK_TOKEN],
        "responses": {"200": {"description": "the PDF", "content": {"application/pdf": _BINARY}}, **_errors(403)}}},
    "/workflows/{id}": {"get": {
        "summary": "A workflow's status (its starter, assignees, auditors and admins)", "parameters": [_ID],
        "responses": {"200": _STATUS, **_errors(400, 401, 403, 404)}}},
    "/workflows/{id}/cancel": {"post": {
        "summary": "Cancel a running workflow (its starter or an admin); everyone involved is told",
        "parameters": [_ID], "requestBody": _json_body({"reason": {"type": "string"}}, []),
        "responses": {"200": _STATUS, **_errors(400, 401, 403, 404, 409)}}},
    "/workflows/{id}/document": {"get": {
        "summary": "The document's current revision (the signed PDF once completed)", "parameters": [_ID],
        "responses": {"200": {"description": "the PDF", "content": {"application/pdf": _BINARY}},
                      **_errors(400, 401, 403, 404)}}},
    "/workflows/{id}/history": {"get": {
        "summary": "The workflow's history: its status and every audit entry of it and its steps (who, when, what, "
                   "from where, how authenticated, verification result)", "parameters": [_ID],
        "responses": {"200": {"description": "workflow, events", "content": _JSON_OBJECT},
                      **_errors(400, 401, 403, 404)}}},
    "/workflows/{id}/certificate": {"get": {
        "summary": "The certificate of completion of a finished workflow: its history as a PDF signed by Siegel's "
                   "workflow account", "parameters": [_ID],
        "responses": {"200": {"description": "the signed PDF", "content": {"application/pdf": _BINARY}},
                      **_errors(400, 401, 403, 404, 409)}}},
    "/workflows/{id}/steps/{step}": {"post": {
        "summary": "Sign, approve or reject a step assigned to the caller; 409 until it is due, or when another "
                   "attempt is at it; a password+2fa step needs X-Siegel-OTP",
        "parameters": [_ID, {"name": "step", "in": "path", "required": True, "schema": {"type": "integer"}}, _OTP],
        "requestBody": _json_body({"action": {"type": "string", "enum": ["sign", "approve", "reject"]},
                                   "reason": {"type": "string", "description": "needed to reject"},
                                   "remote": {"type": "object", "additionalProperties": False, "properties": {
                                       "credential": {"type": "string"}, "pin": {"type": "string"},
                                       "otp": {"type": "string"}},
                                       "description": "a step signed with a remote qualified key: credential and "
                                                      "pin start the signature, pin and otp (the code the service "
                                                      "sent) finish the waiting one"},
                                   "placement": {"type": "object", "additionalProperties": False,
                                                 "required": ["page", "x", "y", "w", "h"], "properties": {
                                       "page": {"type": "integer", "minimum": 1},
                                       **{n: {"type": "number"} for n in ("x", "y", "w", "h")}},
                                       "description": "a sign step whose template fixes no field or box: where its "
                                                      "signature goes (PDF points from the lower left; 400 when the "
                                                      "template fixes one); without it, placed automatically"}},
                                  ["action"]),
        "responses": {"200": _STATUS,
                      "202": {"description": "the workflow's status with remoteSignature (state awaiting-otp, "
                                             "account, credential, otpSent, expires): the step's remote signature "
                                             "waits for the OTP", "content": _JSON_OBJECT},
                      **_errors(400, 401, 403, 404, 409)}}},
}

_AOID = {"name": "aoid", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}
_VERSION = {"name": "version", "in": "query", "schema": {"type": "integer", "minimum": 1},
            "description": "the object's version (default: the newest)"}
_ARCHIVED = {"description": "the archive object: aoid, state (pending until its hash tree is timestamped, then "
                            "archived), versions with metadata and items (name, mimeType, size, stored, digests, state, "
                            "indication and report of a signed document's verification)", "content": _JSON_OBJECT}
_HEX_DIGESTS = {"type": "object", "description": "hash algorithm (sha256, sha384, sha512) → hex hash value",
                "additionalProperties": {"type": "string"}}
_EVIDENCE_REPORT = {"description": "indication, subIndication, proofTime, steps (format, reference, hash-tree, "
                                   "timestamp, chain, sequence, algorithm)", "content": _JSON_OBJECT}
_ARCHIVE_PATHS: dict[str, dict[str, Any]] = {
    "/archive/objects": {
        "get": {"summary": "The archive objects the caller may read (its own; auditors and admins: all), newest first",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                           "maximum": 200, "default": 50}},
                               {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": {"description": "total, page, limit, objects (aoid, state, created, version, "
                                                     "items)", "content": _JSON_OBJECT}, **_errors(400, 401, 403)}},
        "post": {"summary": "Archive documents, or only their hashes, as one new archive object; durable on return",
                 "description": "Signed documents are verified first; by archive.invalid_signatures one that does not "
                                "verify is refused (400, nothing stored) or archived with its report.",
                 "requestBody": _json_body({"items": {"type": "array", "items": {"type": "object", "properties": {
                     "name": {"type": "string", "default": "document"},
                     "mimeType": {"type": "string", "default": "application/octet-stream"},
                     "content": {"type": "string", "contentEncoding": "base64"},
                     "digests": _HEX_DIGESTS}}, "description": "each with content or digests (hash-only)"},
                     "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}, ["items"]),
                 "responses": {"201": _ARCHIVED, **_errors(400, 401, 403, 413, 507)}}},
    "/archive/objects/{aoid}": {
        "get": {"summary": "An archive object (another account's is 404)", "parameters": [_AOID],
                "responses": {"200": _ARCHIVED, **_errors(400, 401, 403, 404)}},
        "delete": {"summary": "Delete an archive object with a reason (logged); its documents leave the store, its "
                              "hashes stay in their trees", "parameters": [_AOID],
                   "requestBody": _json_body({"reason": {"type": "string"}}, ["reason"]),
                   "responses": {"200": {"description": "aoid, state: deleted, reason", "content": _JSON_OBJECT},
                                 **_errors(400, 401, 403, 404)}}},
    "/archive/objects/{aoid}/evidence": {"get": {
        "summary": "An item's evidence record: RFC 4998 ERS (DER) or RFC 6283 XMLERS",
        "parameters": [_AOID, _VERSION,
                       {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["ers", "xml"],
                                                                    "default": "ers"}},
                       {"name": "item", "in": "query", "schema": {"type": "integer", "minimum": 1},
                        "description": "1-based; needed when the version has several items"},
                       {"name": "seal", "in": "query", "schema": {"type": "boolean", "default": True},
                        "description": "build the pending hash trees now (false: 409 while the item is pending)"}],
        "responses": {"200": {"description": "the evidence record", "content": {
            "application/octet-stream": _BINARY, "application/xml": _BINARY}}, **_errors(400, 401, 403, 404, 409)}}},
    "/archive/objects/{aoid}/items/{item}": {"get": {
        "summary": "An archived document (404 for an item archived as hashes only)",
        "parameters": [_AOID, {"name": "item", "in": "path", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}, _VERSION],
        "responses": {"200": {"description": "the document, with its archived MIME type",
                              "content": {"application/octet-stream": _BINARY}}, **_errors(400, 401, 403, 404)}}},
    "/archive/verify": {"post": {
        "summary": "Verify evidence: an archive object's records against what it archived, or a given record "
                   "(ERS or XMLERS) against a document or its hash",
        "requestBody": _json_body({"aoid": {"type": "string"}, "version": {"type": "integer"},
                                   "format": {"type": "string", "enum": ["ers", "xml"], "default": "ers"},
                                   "record": {"type": "string", "contentEncoding": "base64"},
                                   "data": {"type": "string", "contentEncoding": "base64"},
                                   "digests": _HEX_DIGESTS}, []),
        "responses": {"200": {**_EVIDENCE_REPORT, "description": "with aoid: aoid, indication (the worst), items "
                                                                  "(name, report); else the report: "
                                                                  + _EVIDENCE_REPORT["description"]},
                      **_errors(400, 401, 403, 404, 409)}}},
    "/archive/stats": {"get": {
        "summary": "The archive's objects, items, trees, pending items, the oldest pending one, the next renewals",
        "description": "Archive-wide (scope \"archive\", with the counts per account under \"accounts\") for the "
                       "roles that read every object (admin, auditor); for any other account over its own objects "
                       "(scope \"account\", without the shared trees).",
        "responses": {"200": {"description": "counts and times", "content": _JSON_OBJECT}, **_errors(401, 403)}}},
    "/archive/renew": {"post": {
        "summary": "Renew now (admin): timestamps due (RFC 4998 5.2), hash trees into another algorithm (5.3)",
        "requestBody": _json_body({"timestamps": {"type": "boolean", "description": "with hashtree: both"},
                                   "hashtree": {"type": "string", "enum": ["sha256", "sha384", "sha512"]},
                                   "force": {"type": "boolean", "description": "every current tree, due or not"}}, []),
        "responses": {"200": {"description": "what was renewed", "content": _JSON_OBJECT},
                      **_errors(400, 401, 403, 502)}}},
}


_CLIENT_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "the client's key (ak_…)"}
PATHS: dict[str, dict[str, Any]] = {
    "/whoami": {"get": {"summary": "The authenticated account", "responses": {
        "200": {"description": "id, name, role", "content": {"application/json": {"schema": {"type": "object"}}}},
        **_errors(401)}}},
    "/sign": {"post": {
        "summary": "Sign the request body with the caller's own HSM key (or a key granted to it)",
        "description": "A detached CAdES or XAdES is made from the body's digest, computed while the body "
                       "streams in (up to server.max_streamed_bytes); other packagings read the body whole "
                       "(up to server.max_request_bytes). The Content-Type is the document's MIME type. A PDF's "
                       "default stamp (no appearance named) is in the brand of the calling API client, if it has one "
                       "(with remote= too).",
        "parameters": [
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["cades", "xades", "asic", "pades"],
                                                          "default": "cades"}},
            {"name": "level", "in": "query", "schema": _LEVEL},
            {"name": "packaging", "in": "query", "schema": {"type": "string", "enum": [
                "detached", "enveloping", "enveloped"], "default": "detached"}},
            {"name": "digestAlgorithm", "in": "query", "schema": {"type": "string", "enum": [
                "SHA-256", "SHA-384", "SHA-512"], "default": "SHA-256"}},
            {"name": "key", "in": "query", "schema": {"type": "string"}, "description": "a granted key label"},
            {"name": "name", "in": "query", "schema": {"type": "string", "default": "document"},
             "description": "the document's name (XAdES detached reference, ASiC-E entry)"},
            {"name": "container", "in": "query", "schema": {"type": "string", "enum": ["xades", "cades"],
                                                             "default": "xades"}, "description": "inside ASiC-E"},
            *({"name": name, "in": "query", "schema": schema, "description": "PAdES: " + what} for name, schema, what in (
                ("field", {"type": "string"}, "an existing empty signature field"),
                ("page", {"type": "integer"}, "the page of a new field (1 = first, -1 = last), with x, y, w, h"),
                ("x", {"type": "number"}, "the new field's lower left x in PDF points"),
                ("y", {"type": "number"}, "its lower left y"), ("w", {"type": "number"}, "its width"),
                ("h", {"type": "number"}, "its height"),
                ("appearance", {"type": "string"}, "the appearance template (default: appearance.default)"),
                ("invisible", {"type": "boolean"}, "no visible stamp"),
                ("certify", {"type": "boolean"}, "a certification signature (DocMDP P=2)"),
                ("lock", {"type": "string"}, "fields to lock (FieldMDP), comma-separated, * for all"))),
            {"name": "X-Pdf-Password", "in": "header", "schema": {"type": "string"},
             "description": "the password of an encrypted PDF"},
            {"name": "remote", "in": "query", "schema": {"type": "string"},
             "description": "sign with a credential of this remote signing account (CSC API) instead of an HSM key"},
            {"name": "credential", "in": "query", "schema": {"type": "string"},
             "description": "with remote: the credential ID at the service"},
            {"name": "X-Siegel-Remote-PIN", "in": "header", "schema": {"type": "string"},
             "description": "with remote: the credential's PIN, to sign at once when no sent OTP is needed"},
            {"name": "X-Siegel-Remote-OTP", "in": "header", "schema": {"type": "string"},
             "description": "with remote: an offline OTP (authenticator) along with the PIN"}],
        "requestBody": {"required": True, "content": {"application/octet-stream": _BINARY, "application/xml": _BINARY,
                                                      "application/pdf": _BINARY}},
        "responses": {"200": {"description": "the signature (detached, enveloping) or the signed document "
                                             "(enveloped XAdES, ASiC-E); X-Siegel-Signature-Type names the format",
                              "content": {**_CMS, "application/pkcs7-mime": _BINARY, "application/xml": _BINARY,
                                          "application/vnd.etsi.asic-e+zip": _BINARY, "application/pdf": _BINARY}},
                      "202": {"description": "remote: the service sent the OTP; operation, expires, ... for "
                                             "POST /sign/remote/authorize",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 401, 404, 409, 413, 501, 502)}}},
    "/sign-hash": {"post": {
        "summary": "A detached CAdES or XAdES over a digest; the document stays with the caller",
        "requestBody": _json_body({**_DIGEST, "format": {"type": "string", "enum": ["cades", "xades"]},
                                   "level": _LEVEL, "key": {"type": "string"}, "name": {"type": "string"}},
                                  ["digestAlgorithm", "digest"]),
        "responses": {"200": {"description": "the detached signature", "content": {**_CMS, "application/xml": _BINARY}},
                      **_errors(400, 401, 404, 501)}}},
    "/verify": {"post": {
        "summary": "Verify a signed document or a detached signature; the validation report",
        "parameters": [
            {"name": "digest", "in": "query", "schema": {"type": "string", "contentEncoding": "base64"},
             "description": "the detached data's digest, when only that is given"},
            {"name": "digestAlgorithm", "in": "query", "schema": {"type": "string", "enum": [
                "SHA-256", "SHA-384", "SHA-512"], "default": "SHA-256"}},
            {"name": "documentName", "in": "query", "schema": {"type": "string", "default": "document"}},
            {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"},
             "description": "verify at this time instead of now"}],
        "requestBody": {"required": True, "content": {
            "application/octet-stream": _BINARY,
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "signature": {"type": "string", "format": "binary"},
                "document": {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": {"description": "the report (JSON), the ETSI TS 119 102-2 report with "
                                             "Accept: application/xml, or the readable report PDF with Accept: "
                                             "application/pdf (in the brand of the calling API client, else of "
                                             "the host the request came to)",
                              "content": {"application/json": {"schema": {"type": "object"}},
                                          "application/xml": _BINARY, "application/pdf": _BINARY}},
                      **_errors(400, 401, 413, 501)}}},
    "/sign/prepare": {"post": {
        "summary": "Two-step signing, step 1: the digest a key outside Siegel signs (CAdES, XAdES, PAdES, ASiC-E)",
        "description": "The PDF options of a PAdES order are the query parameters of POST /sign (field, page, x, y, "
                       "w, h, appearance, invisible, certify, lock; X-Pdf-Password); the default stamp is in "
                       "the brand of the calling API client, if it has one, as for POST /sign.",
        "requestBody": _json_body({
            "format": {"type": "string", "enum": ["cades", "xades", "pades", "asic"], "default": "cades"},
            "level": {**_LEVEL, "description": "CAdES and XAdES: B-LTA needs the document"},
            "packaging": {"type": "string", "enum": ["detached", "enveloping", "enveloped"], "default": "detached",
                          "description": "XAdES; CAdES detached or enveloping (PAdES is enveloped, ASiC-E detached)"},
            "container": {"type": "string", "enum": ["xades", "cades"], "default": "xades",
                          "description": "the signature inside an ASiC-E"},
            "document": {"type": "string", "contentEncoding": "base64", "description": "the document"},
            "name": {"type": "string"}, "mimeType": {"type": "string"},
            "documents": {"type": "array", "description": "ASiC-E: the container's documents", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "mimeType": {"type": "string"},
                                                 "content": {"type": "string", "contentEncoding": "base64"}}}},
            **_DIGEST,
            "certificateChain": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"},
                                 "description": "DER certificates, the signer's first"}},
            ["certificateChain"]),
        "responses": {"200": {"description": "stateId, digestAlgorithm, digestToSign, signatureAlgorithm, expires",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 401, 501)}}},
    "/sign/complete": {"post": {
        "summary": "Two-step signing, step 3: the signed result with the outside signature value, checked first",
        "requestBody": _json_body({"stateId": {"type": "string"},
                                   "signatureValue": {"type": "string", "contentEncoding": "base64",
                                                      "description": "PKCS#1 v1.5 for RSA, DER for ECDSA"}},
                                  ["stateId", "signatureValue"]),
        "responses": {"200": {"description": "the detached CMS, the XAdES document, the signed PDF or the ASiC-E "
                                             "container of the prepared order (X-Siegel-Signature-Type names it)",
                              "content": {**_CMS, "application/xml": _BINARY, "application/pdf": _BINARY,
                                          "application/vnd.etsi.asic-e+zip": _BINARY}},
                      **_errors(400, 401, 404, 409)}}},
    "/sign/remote/authorize": {"post": {
        "summary": "Remote signing, phase 2: PIN and OTP for the operation POST /sign?remote=... started; "
                   "the remote service signs the hashes and the signed document comes back",
        "requestBody": _json_body({"operation": {"type": "string"}, "pin": {"type": "string"},
                                   "otp": {"type": "string", "description": "the code the service sent"}},
                                  ["operation", "pin"]),
        "responses": {"200": {"description": "the signed document or signature, as POST /sign answers it",
                              "content": {"application/octet-stream": _BINARY}},
                      **_errors(400, 401, 403, 404, 409, 502)}}},
    "/sign/remote/cancel": {"post": {
        "summary": "Remote signing: end a waiting operation; nothing is signed",
        "requestBody": _json_body({"operation": {"type": "string"}}, ["operation"]),
        "responses": {"200": {"description": "operation, state: cancelled"}, **_errors(400, 401, 403, 404, 409)}}},
    "/sign/remote/callback": {"get": {
        "summary": "Remote signing, oauth2code credential: the service's redirect after the user authorised "
                   "the hashes in the browser (authorizationUrl of the 202); the signed document",
        "security": [],
        "description": "Public: the state (operation id and its sealed nonce) binds the operation and its "
                       "user; the code is exchanged with the PKCE verifier Siegel keeps.",
        "parameters": [{"name": "code", "in": "query", "required": True, "schema": {"type": "string"}},
                       {"name": "state", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the signed document",
                              "content": {"application/octet-stream": _BINARY}},
                      **_errors(400, 404, 409, 502)}}},
    "/remote-signing/accounts": {"get": {
        "summary": "The remote signing accounts (admin): service, credentials with certificate validity, "
                   "signatures made through Siegel, quota or terms the service reports",
        "responses": {"200": {"description": "accounts", "content": {"application/json": {"schema": {
            "type": "object"}}}}, **_errors(401, 403)}}},
    "/password-reset": {"post": {
        "summary": "Mail a single-use password reset link to the account (no authentication; always 202)",
        "security": [],
        "requestBody": _json_body({"user": {"type": "string", "description": "account name or e-mail address"}},
                                  ["user"]),
        "responses": {"202": {"description": "accepted, whether or not such an account exists"}, **_errors(400)}}},
    "/password-reset/complete": {"post": {
        "summary": "Set a new password with the token of a reset link (once, before it expires)",
        "security": [],
        "requestBody": _json_body({"token": {"type": "string"}, "password": {"type": "string"}},
                                  ["token", "password"]),
        "responses": {"200": {"description": "the password is changed"}, **_errors(400)}}},
    "/2fa": {"delete": {
        "summary": "Remove one's TOTP authenticator and recovery codes; needs a valid second factor (X-Siegel-OTP)",
        "parameters": [_OTP], "responses": {"200": {"description": "removed"}, **_errors(401, 403)}}},
    "/2fa/totp": {"post": {
        "summary": "Enrol a TOTP authenticator (RFC 6238): the otpauth:// URI and its QR code, shown only now; "
                   "needs a valid second factor (a first enrolment: a code from POST /2fa/otp)",
        "parameters": [_OTP],
        "responses": {"200": {"description": "uri, qrPng (base64 PNG), qrDataUri", "content": {
            "application/json": {"schema": {"type": "object"}}}}, **_errors(401, 403, 409)}}},
    "/2fa/totp/confirm": {"post": {
        "summary": "Activate the enrolled authenticator with its first code (recovery codes come with it)",
        "parameters": [_OTP], "requestBody": _json_body({"code": {"type": "string"}}, ["code"]),
        "responses": {"200": {"description": "status; recoveryCodes when the account had none"},
                      **_errors(400, 401, 403, 409)}}},
    "/2fa/recovery-codes": {"post": {
        "summary": "Ten new single-use recovery codes, shown only now (the earlier ones stop working); "
                   "needs a valid second factor",
        "parameters": [_OTP], "responses": {"200": {"description": "recoveryCodes"}, **_errors(401, 403)}}},
    "/2fa/otp": {"post": {
        "summary": "Send a one-time code by e-mail or SMS for X-Siegel-OTP (works with the password alone)",
        "requestBody": _json_body({"channel": {"type": "string", "enum": ["email", "sms"], "default": "email"}}, []),
        "responses": {"202": {"description": "channel, to (masked), expires"}, **_errors(400, 401, 403, 409, 501)}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/api-clients": {"get": {
        "summary": "The API clients (admin): key, name, account, brand, createdAt, revokedAt",
        "responses": {"200": {"description": "clients", "content": _JSON_OBJECT}, **_errors(401, 403)}}},
    "/api-clients/{key}": {
        "get": {"summary": "One API client", "parameters": [_CLIENT_KEY],
                "responses": {"200": {"description": "the client", "content": _JSON_OBJECT},
                              **_errors(401, 403, 404)}},
        "put": {"summary": "The API client's brand: its stamps, validation reports and the workflows it starts "
                           "take it; an unknown brand or client is 404 naming it and changes nothing",
                "parameters": [_CLIENT_KEY], "requestBody": _json_body({"brand": _BRAND}, ["brand"]),
                "responses": {"200": {"description": "the client", "content": _JSON_OBJECT},
                              **_errors(400, 401, 403, 404)}}},
    **_WORKFLOW_PATHS,
    **_ARCHIVE_PATHS,
}


def document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Siegel REST API", "version": __version__},
        "servers": [{"url": server_url.rstrip("/") + "/api/v1"}],
        "security": [{"basic": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"},
                "resultMinor": {"type": "string", "description": "the DSS ResultMinor of the same error over SOAP, "
                                                                 "where it has one"}}}},
        },
    }
