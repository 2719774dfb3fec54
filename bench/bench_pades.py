"""Issue 5's goals: PAdES signing and verification next to bare pyHanko, and the peak memory of signing a big PDF.

1. A 1-page PDF and a 200-page PDF of about 10 MB (each page a line of text and an incompressible RGB image),
   made here. Siegel: ``sign_pades`` B-B, invisible and visible (the shipped "standard" appearance template
   through ``load_templates``/``stamp_style``, as server/signing/engines.py ``_pades_options`` builds it),
   with the instance's EC P-256 SoftHSM2 key of the integration account. Baseline: pyHanko's own
   ``PdfSigner.sign_pdf`` with ``pyhanko.sign.pkcs11.PKCS11Signer(use_raw_mechanism=True)`` on the same token
   and key label (module, token and PIN read from the instance's settings and secrets as server/app.py
   ``open_hsm`` does), the same field (name, page, box), the same stamp style, SHA-256, PAdES subfilter.
2. Verification of the Siegel-signed visible PDFs: ``verify_pdf`` with ``Trust((root,), allow_fetching=False)``
   against pyHanko's ``validate_pdf_signature`` (its default diff policy) with a ``ValidationContext`` on the
   same root, no fetching (PdfFileReader(strict=False), as verify_pdf reads).
3. Peak memory of signing a ~200 MB PDF (larger images) file to file in a fresh subprocess: ru_maxrss, and
   ru_maxrss minus the same process's VmRSS just before signing, against 1.5 x file size + 150 MB.

Best of ``ROUNDS`` rounds; in each, Siegel's and pyHanko's operation are called in turn (order swapped each
time) until each has run about ``REPEAT_SECONDS``, on a worker thread (the server signs off its reactor thread) and takes the mean time per
operation.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from bench.report import REPO, tree_state, write_result
from server import config
from server.signing.cades import SigningKey
from server.signing.levels import Level
from server.signing.pades import PadesOptions, Placement, sign_pades
from server.signing.stamp import StampFields, load_templates, stamp_style
from server.validation.model import Trust
from server.validation.pades import verify_pdf

ROUNDS = 3
REPEAT_SECONDS = 1.5
PAGES = 200
SMALL_IMAGE = 128  # 128 x 128 RGB = 48 KiB a page: ~10 MB for 200 pages
BIG_IMAGE = 578  # 578 x 578 RGB = ~1 MB a page: ~200 MB for 200 pages
A4 = (0.0, 0.0, 595.0, 842.0)
VISIBLE_BOX = (36.0, 36.0, 340.0, 80.0)  # the standard template's default_box (x, y, width, height), page 1
FIELD = "Signature1"  # the name Siegel gives the first new field
ENVIRON = {"SIEGEL_PKI_KEY_ALGORITHM": "ec-p256"}


# --- inputs -------------------------------------------------------------------------------------------------

def make_pdf(path: Path, pages: int, image_side: int = 0) -> Path:
    """``pages`` A4 pages with a line of text each and, with ``image_side``, an unfiltered RGB image of random
    bytes (incompressible) drawn on it."""
    writer = PdfFileWriter(stream_xrefs=False)
    font = writer.add_object(generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"), pdf_name("/Subtype"): pdf_name("/Type1"),
        pdf_name("/BaseFont"): pdf_name("/Helvetica")}))
    for number in range(1, pages + 1):
        content = f"BT /F1 12 Tf 72 770 Td (Rahmenvertrag zwischen der Muster GmbH und der Beispiel AG, Seite " \
                  f"{number}) Tj ET".encode("latin-1")
        resources = generic.DictionaryObject({pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})})
        if image_side:
            image = generic.StreamObject({
                pdf_name("/Type"): pdf_name("/XObject"), pdf_name("/Subtype"): pdf_name("/Image"),
                pdf_name("/Width"): generic.NumberObject(image_side),
                pdf_name("/Height"): generic.NumberObject(image_side),
                pdf_name("/ColorSpace"): pdf_name("/DeviceRGB"),
                pdf_name("/BitsPerComponent"): generic.NumberObject(8)},
                stream_data=os.urandom(image_side * image_side * 3))
            resources[pdf_name("/XObject")] = generic.DictionaryObject({pdf_name("/Im1"): writer.add_object(image)})
            content += b" q 400 0 0 400 97 300 cm /Im1 Do Q"
        stream = writer.add_object(generic.StreamObject(stream_data=content))
        writer.insert_page(PageObject(stream, A4, resources))
    with path.open("wb") as f:
        writer.write(f)
    return path


# --- the two signers and verifiers --------------------------------------------------------------------------

def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


class Signers:
    """Siegel's sign_pades and pyHanko's PdfSigner over the same HSM key, field and stamp."""

    def __init__(self, settings: config.Settings, key: SigningKey, pyhanko_session: Any | None) -> None:
        self.key = key
        self.template = load_templates(settings)["standard"]
        certificate = x509.load_der_x509_certificate(key.chain[0])
        self._fields: dict[str, Any] = {
            "signer": _common_name(certificate.subject), "reason": None, "location": None,
            "issuer": _common_name(certificate.issuer), "serial": f"{certificate.serial_number:x}",
            "verify_url": settings.server.public_base_url.rstrip("/") + "/portal/verify"}
        self._pyhanko_signer = None
        if pyhanko_session is not None:
            from pyhanko.sign.pkcs11 import PKCS11Signer

            chain = [asn1_x509.Certificate.load(c) for c in key.chain]
            self._pyhanko_signer = PKCS11Signer(pyhanko_session, key_label=key.label, signing_cert=chain[0],
                                                ca_chain=chain[1:], embed_roots=False, use_raw_mechanism=True)

    def style(self) -> Any:
        """The stamp style of one signature (built per signature, as the engine does)."""
        return stamp_style(self.template, StampFields(signed_at=datetime.now(UTC), **self._fields),
                           pdfa=False)

    def siegel(self, pdf: Any, out: Any, visible: bool) -> None:
        if visible:
            x, y, w, h = VISIBLE_BOX
            options = PadesOptions(placement=Placement(page=1, box=(x, y, w, h)), stamp=self.style())
        else:
            options = PadesOptions(placement=Placement(invisible=True))
        sign_pades(self.key, pdf, level=Level.B_B, options=options, out=out)

    def pyhanko(self, pdf: Any, out: Any, visible: bool) -> None:
        writer = IncrementalPdfFileWriter(pdf)
        if visible:
            x, y, w, h = VISIBLE_BOX
            spec = SigFieldSpec(FIELD, on_page=0, box=(x, y, x + w, y + h))
            style = self.style()
        else:
            spec = SigFieldSpec(FIELD, on_page=int(writer.root["/Pages"]["/Count"]) - 1)
            style = None
        meta = PdfSignatureMetadata(field_name=FIELD, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES)
        PdfSigner(meta, self._pyhanko_signer, stamp_style=style, new_field_spec=spec).sign_pdf(writer, output=out)


def _siegel_verify(data: bytes, trust: Trust) -> str:
    reports = verify_pdf(data, trust)
    assert len(reports) == 1, reports
    sub = reports[0].sub_indication
    return f"{reports[0].indication.value}/{sub.value if sub else '-'}/{reports[0].level}"


def _pyhanko_verify(data: bytes, root: asn1_x509.Certificate) -> str:
    reader = PdfFileReader(BytesIO(data), strict=False)
    status = validate_pdf_signature(reader.embedded_signatures[0],
                                    ValidationContext(trust_roots=[root], allow_fetching=False))
    assert status.intact and status.valid, status.pretty_print_details()
    return f"intact={status.intact} valid={status.valid} trusted={status.trusted} coverage={status.coverage.name}"


def _seconds_per_op(ops: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Mean seconds of each of ``ops`` (Siegel's and pyHanko's), called in turn, the order swapped each time, for
    about ``REPEAT_SECONDS`` each (at least twice each): a burst of load on the machine hits both alike."""
    gc.collect()
    spent = dict.fromkeys(ops, 0.0)
    done = 0
    names = list(ops)
    while done < 2 or min(spent.values()) < REPEAT_SECONDS:
        for name in names if done % 2 == 0 else reversed(names):
            started = time.perf_counter()
            ops[name]()
            spent[name] += time.perf_counter() - started
        done += 1
    return {name: total / done for name, total in spent.items()}


# --- peak memory in a fresh process -------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux clear_refs 5); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_child(data_dir: str, label: str, source: str, target: str, mode: str, warm: str) -> None:
    """In the fresh subprocess: open the HSM, sign ``warm`` once (imports, font, first session), then
    ``source`` into ``target`` (files); print RSS figures as JSON."""
    from server.app import open_hsm

    settings = config.load(data_dir=Path(data_dir), environ=ENVIRON)
    session = _pyhanko_session(settings) if mode.startswith("pyhanko") else None  # before Siegel's login
    hsm = open_hsm(settings)
    key = SigningKey(hsm, label, tuple(hsm.certificate_chain(label)))
    signers = Signers(settings, key, session)
    sign = signers.siegel if mode.startswith("siegel") else signers.pyhanko
    visible = mode.endswith("visible") and not mode.endswith("invisible")
    with open(warm, "rb") as pdf:
        sign(pdf, BytesIO(), visible)
    gc.collect()
    hwm_since_start = _status_kib("VmHWM")
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak()
    before_rss = _status_kib("VmRSS")
    started = time.perf_counter()
    with open(source, "rb") as pdf, open(target, "w+b") as out:
        sign(pdf, out, visible)
    seconds = time.perf_counter() - started
    print(json.dumps({"rss_before_kib": before_rss, "maxrss_before_kib": before_max,
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "hwm_before_kib": hwm_since_start, "hwm_reset": reset,
                      "hwm_signing_kib": _status_kib("VmHWM"), "seconds": seconds,
                      "out_bytes": os.path.getsize(target)}))


def _peak(data_dir: Path, label: str, source: Path, target: Path, mode: str, warm: Path) -> dict[str, float]:
    # through a shell that forks the Python process (it does not exec it: a command follows): Linux carries
    # the high-water mark of the process that execs into the new program's ru_maxrss, and that is the small
    # shell then, not this benchmark process
    command = [sys.executable, "-m", "bench.bench_pades", "peak", str(data_dir), label, str(source), str(target),
               mode, str(warm)]
    done = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *command], cwd=REPO, capture_output=True,
                          text=True, timeout=1800, check=False,
                          env={k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pyhanko_session(settings: config.Settings) -> Any:
    """A PKCS#11 session of pyHanko's own on the instance's token (module, label, PIN as open_hsm finds them)."""
    from pyhanko.config.pkcs11 import TokenCriteria
    from pyhanko.sign.pkcs11 import open_pkcs11_session

    from adapters.hsm.softhsm import softhsm_environment
    from server.app import read_secret

    if settings.hsm.softhsm_conf:
        softhsm_environment(settings.path(settings.hsm.softhsm_conf))
    pin = read_secret(settings, settings.hsm.pin_file, "HSM user PIN")
    return open_pkcs11_session(settings.hsm.module, token_criteria=TokenCriteria(label=settings.hsm.token_label),
                               user_pin=pin)


# --- all ----------------------------------------------------------------------------------------------------

def run(work: Path) -> Path:
    from server.app import build_services
    from tests.fixtures.server import make_instance

    tree = tree_state()
    load_before = os.getloadavg()
    inst = make_instance(work / "pades", ENVIRON)
    settings = config.load(data_dir=inst.data_dir, environ=ENVIRON)
    session = _pyhanko_session(settings)  # first: Siegel's HSM then joins the token's login
    services = build_services(settings)
    inputs = {"1page": make_pdf(work / "one.pdf", 1), "200page": make_pdf(work / "200.pdf", PAGES, SMALL_IMAGE)}
    big = make_pdf(work / "big.pdf", PAGES, BIG_IMAGE)
    data = {name: path.read_bytes() for name, path in inputs.items()}
    best: dict[str, float] = {}
    indications: dict[str, Counter[str]] = {}
    peaks: dict[str, list[dict[str, float]]] = {}
    try:
        hsm = services.hsm.get()
        label = services.ca.signing_key_of(services.users.find(inst.user).user_id)
        key = SigningKey(hsm, label, tuple(hsm.certificate_chain(label)))
        root_der = services.ca.ca_certificate_der("ROOT")
        trust = Trust((root_der,), allow_fetching=False)
        root = asn1_x509.Certificate.load(root_der)
        signers = Signers(settings, key, session)

        def signed(impl: str, name: str, visible: bool) -> bytes:
            out = BytesIO()
            getattr(signers, impl)(BytesIO(data[name]), out, visible)
            return out.getvalue()

        # each signer's output checked by the other side's verifier once; the verify inputs are Siegel's
        to_verify: dict[str, bytes] = {}
        for name in data:
            for visible in (False, True):
                ours, theirs = signed("siegel", name, visible), signed("pyhanko", name, visible)
                _pyhanko_verify(ours, root)
                _siegel_verify(theirs, trust)
                if visible:
                    to_verify[name] = ours
        measures: dict[str, Callable[[], object]] = {}
        for name in data:
            for kind, visible in (("invisible", False), ("visible", True)):
                for impl in ("siegel", "pyhanko"):
                    measures[f"sign_{name}_{kind}_{impl}"] = \
                        lambda impl=impl, name=name, visible=visible: signed(impl, name, visible)
            measures[f"verify_{name}_siegel"] = lambda name=name: indications.setdefault(
                f"siegel_{name}", Counter()).update([_siegel_verify(to_verify[name], trust)])
            measures[f"verify_{name}_pyhanko"] = lambda name=name: indications.setdefault(
                f"pyhanko_{name}", Counter()).update([_pyhanko_verify(to_verify[name], root)])
        # reference, not a goal: the 1-page invisible signature on the main thread, where asyncio.run installs
        # and removes a SIGINT handler and Python 3.11's signal.getsignal then formats the repr of the finished
        # task, i.e. of the asn1crypto result of each of sign_pades's three asyncio.run calls
        main_thread = {f"main_thread_sign_1page_invisible_{impl}": measures[f"sign_1page_invisible_{impl}"]
                       for impl in ("siegel", "pyhanko")}
        pairs = [{k: v for k, v in measures.items() if k.rsplit("_", 1)[0] == prefix}
                 for prefix in sorted({k.rsplit("_", 1)[0] for k in measures})]
        with ThreadPoolExecutor(1) as worker:  # off the main thread, as the server signs and verifies
            for _ in range(ROUNDS):
                for pair in pairs:
                    for what, seconds in worker.submit(_seconds_per_op, pair).result().items():
                        best[what] = min(best.get(what, float("inf")), seconds)
                for what, seconds in _seconds_per_op(main_thread).items():
                    best[what] = min(best.get(what, float("inf")), seconds)
        modes = ("siegel-visible", "siegel-invisible", "pyhanko-visible")
        for _ in range(ROUNDS):
            for mode in modes:
                peaks.setdefault(mode, []).append(
                    _peak(inst.data_dir, label, big, work / f"big-{mode}.pdf", mode, inputs["1page"]))
        check = work / "big-siegel-visible.pdf"
        big_report = _siegel_verify(check.read_bytes(), trust)
        for mode in modes:
            (work / f"big-{mode}.pdf").unlink()
    finally:
        session.close()
        services.close()

    measured: dict[str, float] = {}
    baseline: dict[str, float] = {}
    ratios: dict[str, float] = {}
    goals: dict[str, str] = {}
    for name, label_ in (("1page", "1page"), ("200page", "200page")):
        for kind in ("invisible", "visible"):
            suffix = "" if kind == "invisible" else "_visible"
            ours, theirs = best[f"sign_{name}_{kind}_siegel"], best[f"sign_{name}_{kind}_pyhanko"]
            measured[f"sign_{label_}{suffix}_ms_siegel"] = round(ours * 1000, 2)
            baseline[f"sign_{label_}{suffix}_ms_pyhanko"] = round(theirs * 1000, 2)
            ratios[f"sign_{label_}{suffix}_vs_pyhanko"] = round(ours / theirs, 3)
            goals[f"sign_{label_}{suffix}_vs_pyhanko"] = "<= 1.15"
        ours, theirs = best[f"verify_{name}_siegel"], best[f"verify_{name}_pyhanko"]
        measured[f"verify_{label_}_ms_siegel"] = round(ours * 1000, 2)
        baseline[f"verify_{label_}_ms_pyhanko"] = round(theirs * 1000, 2)
        ratios[f"verify_{label_}_vs_pyhanko"] = round(ours / theirs, 3)
        goals[f"verify_{label_}_vs_pyhanko"] = "<= 1.15"
    references = {f"main_thread_sign_1page_ms_{impl}": round(best[f"main_thread_sign_1page_invisible_{impl}"] * 1000, 2)
                  for impl in ("siegel", "pyhanko")}
    references["main_thread_sign_1page_siegel_vs_pyhanko"] = round(
        best["main_thread_sign_1page_invisible_siegel"] / best["main_thread_sign_1page_invisible_pyhanko"], 3)
    references["note"] = ("not a goal: the 1-page invisible signature timed on the benchmark's main thread (the "
                          "figures above run on a worker thread, as the server signs): there every asyncio.run "
                          "sets and restores a SIGINT handler, and Python 3.11's signal.getsignal formats the "
                          "repr of the finished task with its asn1crypto result while doing so (sign_pades has "
                          "three asyncio.run calls, pyHanko's sign_pdf one)")
    sizes = {name: len(d) for name, d in data.items()}
    big_size = big.stat().st_size
    budget_mb = 1.5 * big_size / 2**20 + 150
    for mode, runs in peaks.items():  # the worst round for memory, the best for time
        tag = mode.replace("-", "_")
        measured[f"peak_rss_mb_{tag}"] = round(max(p["hwm_signing_kib"] for p in runs) / 1024, 1)
        measured[f"peak_rss_growth_mb_{tag}"] = round(max(p["hwm_signing_kib"] - p["rss_before_kib"] for p in runs)
                                                      / 1024, 1)
        # the clear_refs reset lowers ru_maxrss too: the process's lifetime peak is the larger of before and after
        lifetime = [max(p["maxrss_kib"], p["maxrss_before_kib"]) for p in runs]
        measured[f"ru_maxrss_mb_{tag}"] = round(max(lifetime) / 1024, 1)
        measured[f"ru_maxrss_growth_mb_{tag}"] = round(max(m - p["rss_before_kib"] for m, p in zip(lifetime, runs))
                                                       / 1024, 1)
        measured[f"rss_before_signing_mb_{tag}"] = round(max(p["rss_before_kib"] for p in runs) / 1024, 1)
        measured[f"sign_200mb_seconds_{tag}"] = round(min(p["seconds"] for p in runs), 2)
    baseline["peak_rss_budget_mb"] = round(budget_mb, 1)
    baseline["big_pdf_mb"] = round(big_size / 2**20, 1)
    parent_rss_mb = _status_kib("VmRSS") / 1024
    measured["benchmark_process_rss_mb_after"] = round(parent_rss_mb, 1)
    for mode in ("siegel-visible", "siegel-invisible"):
        tag = mode.replace("-", "_")
        ratios[f"ru_maxrss_{tag}_vs_budget"] = round(measured[f"ru_maxrss_mb_{tag}"] / budget_mb, 3)
        ratios[f"peak_rss_{tag}_vs_budget"] = round(measured[f"peak_rss_mb_{tag}"] / budget_mb, 3)
        ratios[f"peak_rss_growth_{tag}_vs_budget"] = round(measured[f"peak_rss_growth_mb_{tag}"] / budget_mb, 3)
        goals[f"peak_rss_{tag}_vs_budget"] = "<= 1.0 (1.5 x file size + 150 MB)"
        goals[f"peak_rss_growth_{tag}_vs_budget"] = "<= 1.0 (1.5 x file size + 150 MB)"
    ratios["peak_rss_siegel_visible_vs_pyhanko_visible"] = round(
        measured["peak_rss_mb_siegel_visible"] / measured["peak_rss_mb_pyhanko_visible"], 3)
    return write_result(
        "pades",
        measured=measured, baseline=baseline, ratios=ratios, goals=goals,
        notes=(f"{tree}. pyHanko {_pyhanko_version()}. Times in ms per operation: best of {ROUNDS} rounds; in a round "
               f"Siegel's and pyHanko's operation are called in turn (the order swapped each time) until each has "
               f"run ~{REPEAT_SECONDS} s, the mean per operation, on one worker "
               f"thread of the benchmark process (as the server runs them off its reactor thread), PDFs in memory (BytesIO in and out). Inputs made here: 1 page "
               f"({sizes['1page']} bytes, a text line) and {PAGES} pages ({sizes['200page']} bytes, a text line and "
               f"an unfiltered {SMALL_IMAGE}x{SMALL_IMAGE} RGB image of random bytes per page). Key: the integration "
               "account's EC P-256 key on SoftHSM2 (ECDSA over SHA-256 in the token). Siegel: sign_pades B-B, "
               "invisible (Placement(invisible=True): a new field on the last page) and visible (page 1, box "
               f"{VISIBLE_BOX} = the standard template's default_box, stamp_style of the shipped 'standard' "
               "template built per signature); pyHanko: PdfSigner(PdfSignatureMetadata(field_name, sha256, "
               "PAdES subfilter), PKCS11Signer(use_raw_mechanism=True, same token and key label, same chain, "
               "embed_roots=False), same SigFieldSpec, same stamp style built per signature).sign_pdf over an "
               "IncrementalPdfFileWriter, pyHanko's own /Contents size estimate (Siegel reserves 16 KiB more for a "
               "B-T timestamp). Verify: the Siegel-signed visible PDFs; Siegel verify_pdf with Trust(instance root, "
               "allow_fetching=False) against PdfFileReader(strict=False) + validate_pdf_signature with "
               "ValidationContext(trust_roots=[root], allow_fetching=False) (pyHanko's default diff policy). Every "
               "Siegel output was checked intact+valid by pyHanko, every pyHanko output read by verify_pdf. Peak "
               f"memory: a {big_size} byte PDF ({PAGES} pages, {BIG_IMAGE}x{BIG_IMAGE} RGB random images) signed "
               "file to file (open rb / w+b) in a fresh `python -m bench.bench_pades peak` subprocess per "
               "measurement, after one warm-up signature of the 1-page PDF in that process (imports, font, "
               "session). peak_rss = the subprocess's VmHWM during signing (reset by /proc/self/clear_refs 5 just "
               "before, so it is the signing's peak RSS), growth = that minus VmRSS just before signing; ru_maxrss "
               "(RUSAGE_SELF, the whole process's life: start-up, imports, HSM login, warm-up and signing; the larger "
               "of the figure before signing and after it, as the reset lowers ru_maxrss too) and "
               "ru_maxrss minus the same VmRSS are listed too; the subprocess is forked by a /bin/sh between it and "
               "the benchmark process, as Linux carries the exec'ing process's high-water mark into ru_maxrss "
               f"(maxrss_before_kib in peak_memory_raw: ru_maxrss before signing). Max over {ROUNDS} rounds; budget = 1.5 x file size (MiB) + 150 MiB; pyHanko's sign_pdf "
               "measured the same way as a reference, not a goal. MB here = MiB."),
        indications={k: dict(v) for k, v in indications.items()} | {"siegel_big_visible": big_report},
        peak_memory_raw=peaks,
        references=references,
        load_average={"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
                      "note": "1/5/15-minute load averages: other work on the machine during the run"},
    )


def _pyhanko_version() -> str:
    from importlib.metadata import version

    return version("pyHanko")


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "peak":
    _peak_child(*sys.argv[2:])
