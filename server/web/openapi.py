"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from server import __version__

_PROBLEM = {"description": "RFC 9457 problem document",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_CMS = {"application/pkcs7-signature": {"schema": {"type": "string", "format": "binary"}}}
_LEVEL = {"type": "string", "enum": ["B-B", "B-T"], "default": "B-T"}
_DIGEST = {
    "digestAlgorithm": {"type": "string", "enum": ["SHA-256", "SHA-384", "SHA-512"]},
    "digest": {"type": "string", "contentEncoding": "base64", "description": "the document's digest"},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _PROBLEM for status in statuses}


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


PATHS: dict[str, dict[str, Any]] = {
    "/whoami": {"get": {"summary": "The authenticated account", "responses": {
        "200": {"description": "id, name, role", "content": {"application/json": {"schema": {"type": "object"}}}},
        **_errors(401)}}},
    "/sign": {"post": {
        "summary": "Sign the request body (CAdES) with the caller's own HSM key",
        "parameters": [
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["cades"], "default": "cades"}},
            {"name": "level", "in": "query", "schema": _LEVEL},
            {"name": "packaging", "in": "query", "schema": {"type": "string", "enum": ["detached", "enveloping"],
                                                             "default": "detached"}}],
        "requestBody": {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "the CMS signature (detached) or signed data (enveloping)",
                              "content": {**_CMS, "application/pkcs7-mime": {"schema": {"type": "string",
                                                                                        "format": "binary"}}}},
                      **_errors(400, 401, 404, 501)}}},
    "/sign-hash": {"post": {
        "summary": "A detached CAdES over a digest; the document stays with the caller",
        "requestBody": _json_body({**_DIGEST, "format": {"type": "string", "enum": ["cades"]}, "level": _LEVEL},
                                  ["digestAlgorithm", "digest"]),
        "responses": {"200": {"description": "the detached CMS signature", "content": _CMS},
                      **_errors(400, 401, 404, 501)}}},
    "/sign/prepare": {"post": {
        "summary": "Two-step signing, step 1: the digest a key outside Siegel signs",
        "requestBody": _json_body({**_DIGEST, "level": _LEVEL, "certificateChain": {
            "type": "array", "items": {"type": "string", "contentEncoding": "base64"},
            "description": "DER certificates, the signer's first"}}, ["digestAlgorithm", "digest", "certificateChain"]),
        "responses": {"200": {"description": "stateId, digestToSign, signatureAlgorithm, expires",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 401, 501)}}},
    "/sign/complete": {"post": {
        "summary": "Two-step signing, step 3: the detached CAdES with the outside signature value",
        "requestBody": _json_body({"stateId": {"type": "string"},
                                   "signatureValue": {"type": "string", "contentEncoding": "base64"}},
                                  ["stateId", "signatureValue"]),
        "responses": {"200": {"description": "the detached CMS signature", "content": _CMS},
                      **_errors(400, 401, 404, 409)}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
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
                "detail": {"type": "string"}}}},
        },
    }
