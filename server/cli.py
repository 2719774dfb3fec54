"""The ``siegel`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from server import __version__
from server.config import Settings, load
from server.errors import Code, SiegelError

if TYPE_CHECKING:
    from server.app import Services
    from server.db.models import Certificate
    from server.signing.order import PdfOptions, SignOrder

# Exit codes follow sysexits.h, so scripts can tell the kinds of failure apart.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_CONFIG = 78

_EXIT_BY_CODE = {
    Code.CONFIG: EXIT_CONFIG,
    Code.HSM_UNAVAILABLE: EXIT_UNAVAILABLE,
    Code.HSM_LOGIN: EXIT_UNAVAILABLE,
    Code.DATABASE: EXIT_UNAVAILABLE,
    Code.BAD_REQUEST: EXIT_DATAERR,
    Code.CONFLICT: EXIT_DATAERR,
    Code.NOT_FOUND: EXIT_DATAERR,
    Code.KEY_NOT_FOUND: EXIT_DATAERR,
    Code.REMOTE_SIGNING_FAILED: EXIT_UNAVAILABLE,
}


def _settings(args: argparse.Namespace) -> Settings:
    return load(config_file=args.config, data_dir=args.data_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.serve import metrics_dir, serve

    settings = _settings(args)
    metrics_dir(settings)
    from server import logs
    from server.bootstrap import ensure_ready

    logs.setup(settings.log.level, settings.log.format)
    ensure_ready(settings)
    serve(settings, args.host, args.port, args.workers, args.tls, args.tls_cert, args.tls_key)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from server.bootstrap import init

    for line in init(_settings(args)):
        print(line)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    for section, values in _settings(args).show().items():
        if section:
            print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from server.audit import AuditLog
    from server.db.engine import make_engine

    settings = _settings(args)
    count, fault = AuditLog(make_engine(settings.database_url)).verify()
    if fault is not None:
        print(f"audit log BROKEN after {count - 1} good entries: {fault}")
        return EXIT_FAILED
    print(f"audit log intact: {count} entries")
    return 0


def cmd_hsm_keys(args: argparse.Namespace) -> int:
    from server.app import open_hsm

    hsm = open_hsm(_settings(args))
    try:
        keys = hsm.list_keys()
    finally:
        hsm.close()
    if not keys:
        print("no keys on the token")
    for k in keys:
        print(f"{k.label}\t{k.kind}\textractable={str(k.extractable).lower()}\tsensitive={str(k.sensitive).lower()}")
    return 0


@contextlib.contextmanager
def _services(args: argparse.Namespace) -> Iterator[Services]:
    """The services on an up-to-date schema, closed afterwards."""
    from server.app import build_services
    from server.db.engine import migrate

    services = build_services(_settings(args))
    try:
        migrate(services.engine)
        yield services
    finally:
        services.close()


def cmd_user_add(args: argparse.Namespace) -> int:
    if not args.password_stdin:
        raise SiegelError(Code.BAD_REQUEST, "give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    with _services(args) as services:
        user = services.users.add(args.name, args.email, args.role, password)
    print(f"user {user.name} added (id {user.user_id}, role {user.role.value})")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _services(args) as services:
        users = services.users.list()
    for u in users:
        state = "disabled" if u.disabled else ("locked" if u.locked_until and u.locked_until > datetime.now(timezone.utc)
                                               else "enabled")
        last = f"{u.last_login_at:%Y-%m-%d %H:%M}Z" if u.last_login_at else "-"
        print(f"{u.name}\t{u.role}\t{u.source}\t{state}\t{u.email}\t{last}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    with _services(args) as services:
        changed = services.users.disable(args.name, "cli", args.reason)
    print(f"user {args.name} disabled" if changed else f"user {args.name} was disabled already")
    return 0


def cmd_user_enable(args: argparse.Namespace) -> int:
    with _services(args) as services:
        changed = services.users.enable(args.name, "cli")
    print(f"user {args.name} enabled" if changed else f"user {args.name} was enabled already")
    return 0


def cmd_user_set_role(args: argparse.Namespace) -> int:
    with _services(args) as services:
        user = services.users.set_role(args.name, args.role, "cli")
    print(f"user {user.name} now has the role {user.role.value}")
    return 0


def cmd_user_reset_2fa(args: argparse.Namespace) -> int:
    with _services(args) as services:
        services.twofactor.reset(args.name, "cli")
    print(f"user {args.name}: TOTP authenticator, recovery codes and open one-time codes removed; "
          "the account gets a code by e-mail (POST /api/v1/2fa/otp) and enrols again")
    return 0


def cmd_user_set_phone(args: argparse.Namespace) -> int:
    with _services(args) as services:
        services.twofactor.set_phone(args.name, args.phone or None, "cli")
    print(f"user {args.name}: SMS number {'set' if args.phone else 'removed'}")
    return 0


def cmd_workflow_template_import(args: argparse.Namespace) -> int:
    import json

    from server.identity.policy import Action, require

    try:
        definition = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{args.file}: not a readable JSON file: {exc}") from None
    with _services(args) as services:
        principal = services.users.find(args.user)
        require(principal, Action.TEMPLATE_MANAGE)
        existing = {t["name"]: t["id"] for t in services.workflows.templates.list()}
        repo = services.workflows.templates
        done = (repo.update(principal, existing[args.name], definition) if args.name in existing
                else repo.create(principal, args.name, definition))
    print(f"workflow template {done['name']} (id {done['id']}): version {done['version']}")
    return 0


def cmd_workflow_templates(args: argparse.Namespace) -> int:
    with _services(args) as services:
        for t in services.workflows.templates.list():
            print(f"{t['id']}\t{t['name']}\tversion {t['version']}")
    return 0


def cmd_workflow_status(args: argparse.Namespace) -> int:
    import json

    with _services(args) as services:
        status = services.workflows.status_of(args.id)
    print(json.dumps(status, indent=2, ensure_ascii=False))
    return 0


def cmd_apiclient_create(args: argparse.Namespace) -> int:
    from server.identity.apiclients import ApiClientService

    with _services(args) as services:
        client = ApiClientService(services.users, services.audit).create(args.user, args.name, "cli")
    print(f"key:    {client.key}\nsecret: {client.secret}\n"
          f"API client for {client.user} created; HTTP Basic with key:secret. The secret is shown only now.")
    return 0


def cmd_apiclient_revoke(args: argparse.Namespace) -> int:
    from server.identity.apiclients import ApiClientService

    with _services(args) as services:
        ApiClientService(services.users, services.audit).revoke(args.key, "cli")
    print(f"API client {args.key} revoked")
    return 0


def cmd_apiclient_list(args: argparse.Namespace) -> int:
    from server.identity.apiclients import ApiClientService

    with _services(args) as services:
        clients = ApiClientService(services.users, services.audit).list()
    for c in clients:
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}Z" if c.revoked_at else "active"
        print(f"{c.key}\t{c.user}\t{c.name or '-'}\t{c.created_at:%Y-%m-%d %H:%M}Z\t{state}")
    return 0


def cmd_apiclient_digest_secret(args: argparse.Namespace) -> int:
    from server.identity.wssecurity import KEY_FILE, WsSecurity

    with _services(args) as services:
        secret = WsSecurity(services.users, services.settings.path(KEY_FILE)).new_digest_secret(args.key, "cli")
    print(f"digest secret: {secret}\nWS-Security PasswordDigest for {args.key}: Username {args.key}, this secret as "
          "the password (an earlier digest secret no longer works). The secret is shown only now; it is stored "
          f"encrypted with {KEY_FILE}, which every node needs.")
    return 0


def cmd_clientcert_map(args: argparse.Namespace) -> int:
    from server.identity.client_certs import ClientCertificateService

    with _services(args) as services:
        mapped = ClientCertificateService(services.engine, services.audit, services.ca).map(
            args.cert.read_bytes(), args.user, "cli")
    print(f"client certificate {mapped.fingerprint} ({mapped.subject}, serial {mapped.serial} of {mapped.issuer}) "
          f"now authenticates as {mapped.user}")
    return 0


def cmd_clientcert_unmap(args: argparse.Namespace) -> int:
    from server.identity.client_certs import ClientCertificateService

    arg = args.certificate
    value: str | bytes = Path(arg).read_bytes() if Path(arg).is_file() else arg
    with _services(args) as services:
        fp = ClientCertificateService(services.engine, services.audit, services.ca).unmap(value, "cli")
    print(f"client certificate {fp} unmapped")
    return 0


def cmd_clientcert_list(args: argparse.Namespace) -> int:
    from server.identity.client_certs import ClientCertificateService

    with _services(args) as services:
        rows = ClientCertificateService(services.engine, services.audit, services.ca).list()
    for m in rows:
        print(f"{m.fingerprint}\t{m.user}\t{m.subject}\t{m.issuer}\t{m.serial}\t{m.not_after:%Y-%m-%d}")
    return 0


_DURATION = re.compile(r"^\s*(\d+)\s*([wdhm])\s*$")
_DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w``."""
    match = _DURATION.match(text)
    if match is None:
        raise SiegelError(Code.BAD_REQUEST, f"duration {text!r}: expected a number and a unit, e.g. 30d, 12h, 90m, 2w")
    return timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})


def cmd_ca_init(args: argparse.Namespace) -> int:
    with _services(args) as services:
        done = services.ca.init()
    for line in done or ["the CA hierarchy, the OCSP signer and the TSA exist; nothing to do"]:
        print(line)
    return 0


def _print_certificate(cert: Certificate) -> None:
    state = f"revoked {cert.revoked_at:%Y-%m-%d} ({cert.revocation_reason})" if cert.revoked_at else "valid"
    print(f"{cert.serial}\t{cert.profile}\t{cert.subject}\t{cert.key_label}\t"
          f"{cert.not_after:%Y-%m-%d %H:%M}Z\t{state}")


def _print_issued(cert: Certificate, what: str) -> int:
    print(f"issued {what} (key {cert.key_label!r} in the HSM, valid until {cert.not_after:%Y-%m-%d})")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    with _services(args) as services:
        cert = services.ca.issue_user(args.user)
    return _print_issued(cert, f"certificate {cert.serial} to {cert.subject}")


def cmd_ca_issue_tls(args: argparse.Namespace) -> int:
    with _services(args) as services:
        cert = services.ca.issue_tls_server(args.names)
    return _print_issued(cert, f"TLS server certificate {cert.serial} for {', '.join(args.names)}")


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    with _services(args) as services:
        crl = services.ca.revoke(args.serial, args.reason)
    print(f"{args.reason}: certificate {args.serial}; CRL number {crl.number} of the {crl.ca} CA issued")
    return 0


def cmd_ca_list(args: argparse.Namespace) -> int:
    within = parse_duration(args.expiring_within) if args.expiring_within else None
    with _services(args) as services:
        rows = services.ca.list(within)
    print("serial\tprofile\tsubject\tkey\tnot after\tstate")
    for cert in rows:
        _print_certificate(cert)
    return 0


def cmd_ca_export(args: argparse.Namespace) -> int:
    with _services(args) as services:
        sys.stdout.write(services.ca.export(args.name))
    return 0


def cmd_ca_crl(args: argparse.Namespace) -> int:
    with _services(args) as services:
        crl = services.ca.issue_crl(args.name, "cli")
    print(f"issued CRL number {crl.number} of the {crl.ca} CA (next update {crl.next_update:%Y-%m-%d %H:%M}Z)")
    return 0


def _signed_name(file: Path, order: SignOrder) -> Path:
    """Where ``siegel sign`` writes by default, beside the (first) file."""
    from server.signing.levels import Packaging
    from server.signing.order import Format

    if order.format is Format.ASIC:
        return file.with_name(file.name + ".asice")
    if order.format is Format.PADES:
        return file.with_name(file.stem + ".signed.pdf")
    if order.format is Format.XADES:
        return file.with_name(file.stem + ".signed.xml") if order.packaging is Packaging.ENVELOPED else \
            file.with_name(file.name + ".xades.xml")
    return file.with_name(file.name + (".p7s" if order.packaging is Packaging.DETACHED else ".p7m"))


def _pdf_options(args: argparse.Namespace) -> PdfOptions:
    from server.signing.order import PdfOptions

    box = None
    if args.box:
        try:
            x, y, w, h = (float(v) for v in args.box.split(","))
        except ValueError:
            raise SiegelError(Code.BAD_REQUEST, f"--box {args.box!r}: expected X,Y,W,H in PDF points") from None
        box = (x, y, w, h)
    return PdfOptions(field=args.field, page=args.page, box=box, invisible=args.invisible,
                      appearance=args.appearance, certify=args.certify)


def cmd_sign(args: argparse.Namespace) -> int:
    import mimetypes

    from server.signing.levels import Level, Packaging
    from server.signing.order import Document, Format, SignOrder, is_xml_type

    fmt = Format(args.format)
    documents = []
    for file in args.files:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise SiegelError(Code.BAD_REQUEST, f"{file}: {exc.strerror}") from None
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        documents.append(Document(file.name, content=content, mime_type=mime, is_xml=is_xml_type(mime)))
    packaging = Packaging(args.packaging or ("enveloped" if fmt in (Format.XADES, Format.PADES) else "detached"))
    order = SignOrder(fmt, Level(args.level), packaging, tuple(documents), key_name=args.key,
                      container_format=Format(args.container), pdf=_pdf_options(args))
    if len(documents) > 1 and fmt is not Format.ASIC:
        raise SiegelError(Code.BAD_REQUEST, "several files are signed together in an ASiC-E container: --format asic")
    out: Path = args.out or _signed_name(args.files[0], order)
    with _services(args) as services:
        user = services.users.find(args.as_user)
        (signed,) = services.signing.sign(user.user_id, user.name, order)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(signed.data)
    partial.replace(out)  # the result appears whole or not at all
    names = ", ".join(str(f) for f in args.files)
    print(f"signed {names} as {user.name}: {fmt.value.upper()} {args.level} {packaging.value}, written to {out}")
    return 0


EXIT_INDETERMINATE = 3  # `siegel verify`: no signature failed, but not every one could be proven valid


def cmd_verify(args: argparse.Namespace) -> int:
    from server.validation.model import Indication
    from server.validation.report import to_etsi_xml, to_json
    from server.validation.service import parse_validation_time

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SiegelError(Code.BAD_REQUEST, f"{path}: {exc.strerror}") from None

    detached = {path.name: read(path) for path in args.detached}
    digests = {}
    if args.digest:
        algorithm, _, value = args.digest.partition(":")
        try:
            digests[args.document_name] = (algorithm.lower().replace("-", ""), bytes.fromhex(value))
        except ValueError:
            raise SiegelError(Code.BAD_REQUEST, "--digest: expected ALGORITHM:HEX such as sha256:9f86d0...") from None
    with _services(args) as services:
        report = services.verification.verify(read(args.file), name=args.file.name, detached=detached,
                                              detached_digests=digests,
                                              at=parse_validation_time(args.at, "--at") if args.at else None)
        written: dict[Path, bytes] = {args.report: to_etsi_xml(report)} if args.report else {}
        if args.report_pdf:
            from server.branding.report import report_pdf

            brand = services.brands.get(args.brand) if args.brand else services.brands.default()
            written[args.report_pdf] = report_pdf(services.brands, brand, to_json(report))
    for path, content in written.items():
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        partial.replace(path)  # a report appears whole or not at all
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        for sig in report.signatures:
            sub = f"/{sig.sub_indication.value}" if sig.sub_indication else ""
            print(f"{sig.id}: {sig.indication.value}{sub} ({sig.format} {sig.level or '-'}) "
                  f"signer {sig.signer_name or 'unknown'}")
            for scope in sig.scopes:
                print(f"  covers {scope.name}: {scope.description}")
            for message in sig.messages:
                print(f"  {message}")
    indications = {sig.indication for sig in report.signatures}
    if Indication.TOTAL_FAILED in indications:
        return EXIT_FAILED
    return 0 if indications == {Indication.TOTAL_PASSED} else EXIT_INDETERMINATE


def cmd_key_grant(args: argparse.Namespace) -> int:
    with _services(args) as services:
        services.grants.grant(args.label, args.user, "cli")
    print(f"{args.user} may now sign with the key {args.label}")
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    with _services(args) as services:
        services.grants.revoke(args.label, args.user, "cli")
    print(f"{args.user} may no longer sign with the key {args.label}")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    with _services(args) as services:
        grants = services.grants.grants()
    for label, user, granted_at in grants:
        print(f"{label}\t{user}\t{granted_at:%Y-%m-%d %H:%M}Z")
    return 0


def cmd_remote_accounts(args: argparse.Namespace) -> int:
    """Tab-separated per credential: account, credential, subject, not after, validity, signatures by Siegel."""
    with _services(args) as services:
        accounts = services.remote_overview()
    if args.json:
        print(json.dumps(accounts, indent=2))
        return 0
    for account in accounts:
        if account["error"]:
            print(f"{account['name']}\t-\terror: {account['error']}")
        for c in account["credentials"]:
            print(f"{account['name']}\t{c['id']}\t{c['subject']}\t{c['notAfter']}\t{c['validity']}\t"
                  f"{c['signaturesBySiegel']}")
    return 0 if all(a["error"] is None for a in accounts) else EXIT_UNAVAILABLE


def _directory_sync(services: Services):  # -> DirectorySync
    if services.directory is None:
        raise SiegelError(Code.CONFIG, "the directory is not enabled: set directory.enabled = true and its servers, "
                                       "bind account and base DNs (see config/siegel.toml [directory])")
    return services.directory


def cmd_ldap_sync(args: argparse.Namespace) -> int:
    """A progress bar (rich, on stderr) when run in a terminal; the summary always."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with _services(args) as services, Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed}"),
                                               TimeElapsedColumn(), console=Console(stderr=True),
                                               disable=not sys.stdout.isatty(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=None)
            bar.update(tasks[stage], completed=done)

        summary = _directory_sync(services).run(full=args.full, dry_run=args.dry_run, progress=progress)
    if args.json:
        from dataclasses import asdict
        print(json.dumps(asdict(summary), indent=2))
    else:
        print("\n".join(summary.lines()))
    return EXIT_FAILED if summary.errors else 0


def cmd_ldap_check(args: argparse.Namespace) -> int:
    from adapters.directory.ldap import open_directory

    with _services(args) as services:
        _directory_sync(services)
        reader = open_directory(services.settings)
        try:
            found = reader.check()
        finally:
            reader.close()
    print(", ".join(f"{k}: {v}" for k, v in found.items()))
    return 0


def cmd_ldap_status(args: argparse.Namespace) -> int:
    with _services(args) as services:
        state = _directory_sync(services).state()
    for name in ("change_attribute", "high_water", "last_run_at", "last_full_at", "last_ok_at", "last_error",
                 "last_summary"):
        print(f"{name}: {getattr(state, name) or '-'}")
    return 0


def _archive_hash(text: str) -> tuple[str, bytes]:
    """``ALG:HEX`` of ``--hash``."""
    algorithm, _, hexdigest = text.partition(":")
    try:
        return algorithm.lower(), bytes.fromhex(hexdigest)
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"--hash {text!r}: expected ALG:HEX such as sha256:9f86d0...") from None


def cmd_archive_add(args: argparse.Namespace) -> int:
    """Each FILE (or each --hash) becomes one archive object; prints one AOID a line."""
    import mimetypes

    from server.archive.service import ArchiveItem

    if bool(args.files) == bool(args.hash):
        raise SiegelError(Code.BAD_REQUEST, "give files or --hash ALG:HEX values (not both)")
    with _services(args) as services:
        user = services.users.find(args.as_user)
        if args.hash:
            aoids = services.archive.submit_hashes(user, [dict([_archive_hash(h)]) for h in args.hash])
        else:
            aoids = []
            for file in args.files:
                with _read_error(file):
                    content = file.read_bytes()
                mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                aoids.append(services.archive.submit(user, [ArchiveItem(file.name, mime, content)]).aoid)
    print("\n".join(aoids))
    return 0


@contextlib.contextmanager
def _read_error(file: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{file}: {exc.strerror}") from None


def cmd_archive_evidence(args: argparse.Namespace) -> int:
    with _services(args) as services:
        records = services.archive.evidence(services.users.find(args.as_user), args.aoid, args.format)
    for n, record in enumerate(records):
        if args.out is None:
            sys.stdout.buffer.write(record)
            continue
        out = args.out if len(records) == 1 else args.out.with_name(f"{args.out.stem}-{n + 1}{args.out.suffix}")
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(record)
        partial.replace(out)
        print(f"evidence record of item {n + 1} written to {out}")
    return 0


def cmd_archive_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the record proves the document or hash, 1 when it fails, 3 when undecided."""
    from server.validation.model import Indication

    with _read_error(args.record):
        record = args.record.read_bytes()
    data = None
    if args.file is not None:
        with _read_error(args.file):
            data = args.file.read_bytes()
    digests = dict([_archive_hash(args.hash)]) if args.hash else None
    with _services(args) as services:
        report = services.archive.verify(record, data=data, digests=digests)
    print(json.dumps(report.to_json(), indent=2))
    return {Indication.TOTAL_PASSED: 0, Indication.TOTAL_FAILED: EXIT_FAILED}.get(report.indication,
                                                                                  EXIT_INDETERMINATE)


def cmd_archive_renew(args: argparse.Namespace) -> int:
    with _services(args) as services:
        done = services.archive.renew(timestamps=args.timestamps or not args.hashtree, hashtree=args.hashtree,
                                      force=args.force)
    print(json.dumps(done, indent=2))
    return 0


def cmd_archive_stats(args: argparse.Namespace) -> int:
    with _services(args) as services:
        stats = services.archive.stats()
    for name, value in stats.items():
        print(f"{name}: {'-' if value is None else value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siegel", description="Siegel signature server")
    parser.add_argument("--version", action="version", version=f"siegel {__version__}")
    parser.add_argument("--data-dir", type=Path, help="data directory (default $SIEGEL_DATA_DIR or ./var)")
    parser.add_argument("--config", type=Path, help="configuration file (default $SIEGEL_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str,
                within: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        p = (within or sub).add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command("serve", cmd_serve, "run the HTTP server (initialises what is missing first)")
    p.add_argument("--host", help="listen address (setting server.host)")
    p.add_argument("--port", type=int, help="listen port (setting server.port)")
    p.add_argument("--workers", type=int, help="worker processes sharing the port (setting server.workers)")
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a certificate of the internal CA "
                                                      "for server.tls_names (issued and renewed as needed)")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM, the chain after it), "
                                                 "e.g. the company's own for its host name")
    p.add_argument("--tls-key", type=Path, help="the private key (PEM) of --tls-cert")
    command("init", cmd_init, "create what is missing: data directory, HSM token, database schema")

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("show", cmd_config_show, "print the effective settings, secrets masked", cfg)
    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("verify", cmd_audit_verify, "check the hash chain; names the first altered, inserted or deleted entry", aud)
    hsm = sub.add_parser("hsm", help="hardware security module").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("keys", cmd_hsm_keys, "list the keys on the token", hsm)
    usr = sub.add_parser("user", help="accounts").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("add", cmd_user_add, "add an account; the password is read from standard input", usr)
    p.add_argument("name")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=["admin", "auditor", "template_manager", "signer", "integration"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command("list", cmd_user_list, "every account (tab-separated: name, role, source, state, e-mail, last login)", usr)
    p = command("disable", cmd_user_disable, "disable an account (audited; certificates and grants stay)", usr)
    p.add_argument("name")
    p.add_argument("--reason", default="", help="recorded in the audit entry")
    p = command("enable", cmd_user_enable, "enable a disabled account again (audited; the flags of its pending "
                "workflow steps are cleared, as when the directory sync enables it)", usr)
    p.add_argument("name")
    p = command("set-role", cmd_user_set_role, "change an account's role", usr)
    p.add_argument("name")
    p.add_argument("role", choices=["admin", "auditor", "template_manager", "signer", "integration"])
    p = command("reset-2fa", cmd_user_reset_2fa, "remove an account's second factors (lost authenticator; audited)", usr)
    p.add_argument("name")
    p = command("set-phone", cmd_user_set_phone, "the number SMS codes go to (E.164, e.g. +4930123456; "
                "empty removes it)", usr)
    p.add_argument("name")
    p.add_argument("phone")
    apic = sub.add_parser("apiclient", help="API clients (key and secret of an integration account)"
                          ).add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("create", cmd_apiclient_create, "a new key and secret; the secret is printed once", apic)
    p.add_argument("--user", required=True, help="the integration account the client acts as")
    p.add_argument("--name", help="what the client is, e.g. the ERP system's name")
    p = command("revoke", cmd_apiclient_revoke, "revoke an API client's key", apic)
    p.add_argument("key")
    command("list", cmd_apiclient_list, "every API client (tab-separated: key, account, name, created, state)", apic)
    p = command("digest-secret", cmd_apiclient_digest_secret, "a new secret for WS-Security PasswordDigest "
                "(stored encrypted, printed once; replaces an earlier one)", apic)
    p.add_argument("key")
    ccert = sub.add_parser("clientcert", help="TLS client certificates mapped to accounts"
                           ).add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("map", cmd_clientcert_map, "map a certificate (PEM or DER file) to an account: under --tls it "
                "authenticates as the account", ccert)
    p.add_argument("cert", type=Path, metavar="CERT")
    p.add_argument("user", metavar="USER")
    p = command("unmap", cmd_clientcert_unmap, "remove a mapping, by certificate file or SHA-256 fingerprint", ccert)
    p.add_argument("certificate", metavar="CERT|FINGERPRINT")
    command("list", cmd_clientcert_list, "every mapping (tab-separated: fingerprint, account, subject, issuer, "
            "serial, not after)", ccert)
    p = command("sign", cmd_sign, "sign files with a user's HSM key: CAdES, XAdES, PAdES or an ASiC-E container")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument("--as", dest="as_user", required=True, metavar="USER", help="whose account signs")
    p.add_argument("--key", metavar="LABEL", help="a key label granted to the account (default: its own key)")
    p.add_argument("--format", choices=["cades", "xades", "pades", "asic"], default="cades")
    p.add_argument("--field", help="PAdES: an existing empty signature field")
    p.add_argument("--page", type=int, help="PAdES: the page of a new field (1 = first, -1 = last), with --box")
    p.add_argument("--box", metavar="X,Y,W,H", help="PAdES: the new field's rectangle in PDF points")
    p.add_argument("--appearance", help="PAdES: the appearance template (default: appearance.default)")
    p.add_argument("--invisible", action="store_true", help="PAdES: no visible stamp")
    p.add_argument("--certify", action="store_true", help="PAdES: a certification signature (DocMDP P=2)")
    p.add_argument("--container", choices=["xades", "cades"], default="xades", help="the signature inside ASiC-E")
    p.add_argument("--level", choices=["B-B", "B-T", "B-LT", "B-LTA"], default="B-T")
    p.add_argument("--packaging", choices=["detached", "enveloping", "enveloped"],
                   help="default: enveloped for XAdES, detached otherwise")
    p.add_argument("--out", type=Path, help="default beside FILE: .p7s/.p7m (CAdES), .signed.xml/.xades.xml "
                                            "(XAdES), .asice")

    arc = sub.add_parser("archive", help="long-term archive (RFC 4998 evidence records)"
                         ).add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("add", cmd_archive_add, "archive files (or only their hashes); prints each archive object id", arc)
    p.add_argument("files", type=Path, nargs="*", metavar="FILE")
    p.add_argument("--hash", action="append", default=[], metavar="ALG:HEX", help="archive only this hash (repeatable)")
    p.add_argument("--as", dest="as_user", required=True, metavar="USER", help="whose account archives")
    p = command("evidence", cmd_archive_evidence, "the evidence record of each item of an archive object "
                "(builds its hash tree now when it is pending)", arc)
    p.add_argument("aoid", metavar="AOID")
    p.add_argument("--format", choices=["ers", "xml"], default="ers", help="RFC 4998 ASN.1 or RFC 6283 XML")
    p.add_argument("--as", dest="as_user", required=True, metavar="USER")
    p.add_argument("-o", "--out", type=Path, metavar="FILE", help="default: standard output")
    p = command("verify", cmd_archive_verify, "verify an evidence record against a document or a hash: exit 0 "
                "valid, 1 failed, 3 undecided", arc)
    p.add_argument("record", type=Path, metavar="RECORD")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--file", type=Path, metavar="F")
    which.add_argument("--hash", metavar="ALG:HEX")
    p = command("renew", cmd_archive_renew, "renew now what is due: timestamps (RFC 4998 5.2) and hash trees "
                "(5.3)", arc)
    p.add_argument("--timestamps", action="store_true", help="timestamp renewal only (with --hashtree: both)")
    p.add_argument("--hashtree", metavar="ALG", choices=["sha256", "sha384", "sha512"],
                   help="hash-tree renewal of the current trees into ALG")
    p.add_argument("--force", action="store_true", help="renew every current tree, due or not")
    command("stats", cmd_archive_stats, "objects, trees, pending items, the oldest pending, the next renewals", arc)

    p = command("verify", cmd_verify, "verify a signed file or a detached signature: exit 0 when every signature "
                                      "is TOTAL-PASSED, 1 when one failed, 3 when one is INDETERMINATE")
    p.add_argument("file", type=Path, help="the signed document, container or detached signature")
    p.add_argument("--detached", type=Path, nargs="*", default=[], metavar="DATA",
                   help="the data a detached signature covers")
    p.add_argument("--digest", metavar="ALG:HEX", help="the detached data's digest, when only that is at hand")
    p.add_argument("--document-name", default="document", help="the detached data's name for --digest")
    p.add_argument("--at", metavar="TIME", help="verify at this ISO 8601 time instead of now")
    p.add_argument("--report", type=Path, metavar="XML", help="also write the ETSI TS 119 102-2 report here")
    p.add_argument("--report-pdf", type=Path, metavar="PDF", help="also write the readable report as PDF here")
    p.add_argument("--brand", help="the brand of the report PDF (default: the default brand)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    key = sub.add_parser("key", help="who may sign with which key").add_subparsers(dest="sub", required=True,
                                                                                   metavar="SUB")
    p = command("grant", cmd_key_grant, "let an account sign with a key that is not its own", key)
    p.add_argument("label", help="the key label (see `siegel ca list`)")
    p.add_argument("user")
    p = command("revoke", cmd_key_revoke, "take a key grant away", key)
    p.add_argument("label")
    p.add_argument("user")
    command("list", cmd_key_list, "every key grant", key)

    from server.pki.ca import REASONS

    ca = sub.add_parser("ca", help="internal PKI").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("init", cmd_ca_init, "create the root and issuing CA, OCSP signer and TSA where missing", ca)
    p = command("issue", cmd_ca_issue, "a new HSM key and user-signing certificate for an account", ca)
    p.add_argument("user", help="account name")
    p = command("issue-tls", cmd_ca_issue_tls, "a new HSM key and TLS server certificate", ca)
    p.add_argument("names", nargs="+", metavar="NAME", help="host names or IP addresses; the first is the CN")
    p = command("revoke", cmd_ca_revoke, "revoke a certificate and issue the CRL at once", ca)
    p.add_argument("serial", help="serial number in hexadecimal (colons allowed)")
    p.add_argument("--reason", required=True, choices=list(REASONS), help="RFC 5280 CRLReason")
    p = command("list", cmd_ca_list, "issued certificates (tab-separated)", ca)
    p.add_argument("--expiring-within", metavar="DURATION", help="only valid ones expiring within, e.g. 30d")
    p = command("export", cmd_ca_export, "a certificate as PEM: a CA's, or the one with a serial", ca)
    p.add_argument("name", metavar="ROOT|ISSUING|SERIAL")
    p = command("crl", cmd_ca_crl, "issue a fresh CRL of a CA now", ca)
    p.add_argument("name", type=str.upper, choices=["ROOT", "ISSUING"])
    ldap = sub.add_parser("ldap", help="LDAP / Active Directory").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("sync", cmd_ldap_sync, "synchronise accounts from the directory: incremental since the last run, "
                "certificates for enrolment groups, revocation for disabled accounts; exit 1 when errors", ldap)
    p.add_argument("--full", action="store_true", help="read every user (also finds accounts gone from the directory)")
    p.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    command("check", cmd_ldap_check, "bind with the service account and say what kind of directory answers", ldap)
    command("status", cmd_ldap_status, "the high-water mark and how the last sync went", ldap)
    wf = sub.add_parser("workflow", help="signature workflows").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("template-import", cmd_workflow_template_import, "create a workflow template from a JSON definition "
                "file, or a new version of the template of that name", wf)
    p.add_argument("name")
    p.add_argument("file", help="the definition (JSON: steps, starters, delivery; see docs/architecture.md)")
    p.add_argument("--user", required=True, help="the account (template_manager or admin) it is recorded under")
    command("templates", cmd_workflow_templates, "the templates in use (tab-separated: id, name, version)", wf)
    p = command("status", cmd_workflow_status, "a workflow's status as JSON", wf)
    p.add_argument("id", type=int)
    remote = sub.add_parser("remote", help="remote signing services (CSC API)").add_subparsers(
        dest="sub", required=True, metavar="SUB")
    p = command("accounts", cmd_remote_accounts, "the configured accounts: credentials (tab-separated: account, "
                "credential, subject, not after, validity, signatures made through Siegel); exit 69 when a "
                "service does not answer", remote)
    p.add_argument("--json", action="store_true", help="everything as JSON, quota and terms included")
    from server.branding.cli import register as register_brand

    register_brand(sub, command, _services)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # database, store, token and secrets are the server's alone
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SiegelError as exc:
        print(f"siegel: error: {exc.message}", file=sys.stderr)
        return _EXIT_BY_CODE.get(exc.code, EXIT_FAILED)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
