"""Coverage-guided fuzzing of one target with atheris (libFuzzer): ``python -m tests.fuzz.atheris_main TARGET
[-max_total_time=N] [other libFuzzer flags]``; ``--list`` names the targets.

The target's services run on a SoftHSM2 token and SQLite of their own under var/fuzz/work/TARGET
(var/fuzz: ``SIEGEL_FUZZ_DIR`` when set); the corpus is var/fuzz/corpus/TARGET (seeded with the target's valid inputs when empty), crashes and hangs
land in var/fuzz/artifacts/TARGET/. A clean refusal (SiegelError) is an answer; any other exception is a
crash, and an input running longer than the target's bound is a hang (libFuzzer's ``-timeout``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

VAR = Path(os.environ.get("SIEGEL_FUZZ_DIR") or Path(__file__).resolve().parents[2] / "var" / "fuzz")
INSTRUMENTED = ["server", "adapters", "asn1crypto", "pyhanko", "pyhanko_certvalidator", "zipfile", "email"]
"""What coverage is measured in: Siegel and the pure-Python parsers its inputs reach (instrumenting every
loaded module takes minutes)."""


def _seed_corpus(corpus: Path, seeds: list[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for seed in seeds:
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def fuzz(name: str, flags: list[str]) -> int:
    """Run libFuzzer on the target ``name`` until ``flags`` say stop (it exits the process, as libFuzzer does)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        from server.errors import SiegelError
        from tests.fuzz.context import standalone_context
        from tests.fuzz.targets import TARGETS
    target = TARGETS.get(name)
    if target is None:
        print(f"unknown target {name!r}; targets: {', '.join(sorted(TARGETS))}", file=sys.stderr)
        return 2
    work = VAR / "work" / target.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus, artifacts = VAR / "corpus" / target.name, VAR / "artifacts" / target.name
    artifacts.mkdir(parents=True, exist_ok=True)
    with standalone_context(work) as context:
        _seed_corpus(corpus, target.seeds(context))

        def one(data: bytes) -> None:
            try:
                target.run(context, data)
            except SiegelError:
                pass

        defaults = [f"-timeout={max(1, round(target.bound))}", f"-artifact_prefix={artifacts}/"]
        atheris.Setup([sys.argv[0], *defaults, *flags, str(corpus)], one)
        atheris.Fuzz()
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "--list":
        from tests.fuzz.targets import TARGETS
        print("\n".join(sorted(TARGETS)))
        return 0
    return fuzz(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
