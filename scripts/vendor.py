#!/usr/bin/env python3
"""Fill vendor/llama.cpp from the pinned llama-cpp-python sdist and apply patches/.

    python scripts/vendor.py            # fetch (cached), verify, extract, apply
    python scripts/vendor.py export     # write the vendor tree's commits to patches/
    python scripts/vendor.py status     # say whether the tree matches patches/

The vendor tree is a git repository: one commit holding upstream as
extracted (tag `upstream`), then one commit per patch (`git am`). Editing
llama.cpp means committing in vendor/llama.cpp and running `export`.
Only pip talks to the network (the package registry).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# --vendor/--patches override these (the round-trip test works in a temporary copy)
VENDOR = ROOT / "vendor" / "llama.cpp"
PATCHES = ROOT / "patches"
CACHE = Path(os.environ.get("PYLAMPE_CACHE", Path.home() / ".cache" / "pylampe"))

BINDINGS_VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{BINDINGS_VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
UPSTREAM_TAG = "upstream"

GIT_IDENTITY = ["-c", "user.name=pylampe", "-c", "user.email=pylampe@localhost",
                "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]
# Fixed dates make `git am` produce the same commits on every machine.
GIT_DATES = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
             "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


class VendorError(RuntimeError):
    pass


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    env = {**os.environ, **GIT_DATES}
    res = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd or VENDOR, env=env,
                         capture_output=True, text=True)
    if check and res.returncode != 0:
        raise VendorError(f"git {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist() -> Path:
    """Return the verified sdist, downloading it with pip if not cached."""
    path = CACHE / SDIST
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            # --no-build-isolation: pip only reads the metadata, nothing is built.
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                            "--no-deps", "--no-build-isolation",
                            "--no-binary=llama-cpp-python", "-d", tmp,
                            f"llama-cpp-python=={BINDINGS_VERSION}"], check=True)
            shutil.move(str(Path(tmp) / SDIST), path)
    digest = sha256(path)
    if digest != SDIST_SHA256:
        raise VendorError(f"{path}: sha256 {digest} does not match the pinned {SDIST_SHA256}")
    return path


def extract(sdist: Path) -> None:
    """Extract the sdist's vendor/llama.cpp and commit it as the upstream base."""
    prefix = f"llama_cpp_python-{BINDINGS_VERSION}/vendor/llama.cpp/"
    tmp = VENDOR.with_name(VENDOR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(prefix) and len(m.name) > len(prefix):
                m.name = m.name[len(prefix):]
                if m.name.split("/")[0] != ".git":
                    members.append(m)
        tar.extractall(tmp, members=members, filter="tar")
    git("init", "-q", "-b", "main", cwd=tmp)
    git("add", "-A", "-f", cwd=tmp)
    git("commit", "-q", "-m", f"llama.cpp {LLAMA_CPP_COMMIT}", cwd=tmp)
    git("tag", UPSTREAM_TAG, cwd=tmp)
    shutil.rmtree(VENDOR, ignore_errors=True)
    tmp.rename(VENDOR)


def patch_files() -> list[Path]:
    return sorted(PATCHES.glob("*.patch"))


def applied_subjects() -> list[str]:
    out = git("log", "--reverse", "--format=%s", f"{UPSTREAM_TAG}..HEAD")
    return [line for line in out.splitlines() if line]


def patch_subject(patch: Path) -> str:
    for line in patch.read_text().splitlines():
        if line.startswith("Subject: "):
            return line[len("Subject: "):].removeprefix("[PATCH] ")
    raise VendorError(f"{patch.name}: no Subject line")


def applied_matches(patch: Path, rev: str) -> bool:
    """True if commit `rev` carries exactly the change in `patch`."""
    mine = git("format-patch", "--stdout", "--no-signature", "-1", rev)
    return patch_id(mine) == patch_id(patch.read_text()) and \
        message(mine) == message(patch.read_text())


def patch_id(text: str) -> str:
    res = subprocess.run(["git", "patch-id", "--stable"], input=text, capture_output=True,
                         text=True, check=True)
    return res.stdout.split(" ")[0]


def message(text: str) -> str:
    """Subject and body of a format-patch mail, without headers or diff."""
    head = text.split("\n---\n", 1)[0]
    lines = head.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject: "))
    return "\n".join(lines[start:]).strip()


def ensure_clean() -> None:
    if git("status", "--porcelain"):
        raise VendorError("vendor/llama.cpp has uncommitted edits: commit them there and run "
                          "`python scripts/vendor.py export`, or remove vendor/llama.cpp")


def apply() -> None:
    if not (VENDOR / ".git").exists():
        extract(fetch_sdist())
    ensure_clean()
    patches = patch_files()
    commits = git("rev-list", "--reverse", f"{UPSTREAM_TAG}..HEAD").split()
    keep = 0
    while keep < min(len(patches), len(commits)) and applied_matches(patches[keep], commits[keep]):
        keep += 1
    if keep == len(patches) == len(commits):
        print(f"vendor/llama.cpp is up to date ({len(patches)} patches)")
        return
    local = [c for c in commits[keep:] if not applied_by_us(c)]
    if local:
        raise VendorError(f"vendor/llama.cpp has {len(local)} commit(s) not in patches/: run "
                          "`python scripts/vendor.py export` first")
    base = commits[keep - 1] if keep else UPSTREAM_TAG
    git("reset", "-q", "--hard", base)
    for patch in patches[keep:]:
        git("am", "-q", "--keep-cr", str(patch))
        print(f"applied {patch.name}")


def applied_by_us(rev: str) -> bool:
    """Commits made by `apply` carry the fixed committer date; local work does not."""
    return git("log", "-1", "--format=%cI", rev).strip() == GIT_DATES["GIT_COMMITTER_DATE"].replace("Z", "+00:00")


def export() -> None:
    ensure_clean()
    for old in patch_files():
        old.unlink()
    PATCHES.mkdir(exist_ok=True)
    git("format-patch", "-q", "--no-signature", "--zero-commit", "--full-index",
        "--no-numbered", "-o", str(PATCHES), f"{UPSTREAM_TAG}..HEAD")
    for patch in patch_files():
        print(f"wrote patches/{patch.name}")


def status() -> int:
    if not (VENDOR / ".git").exists():
        print("vendor/llama.cpp is missing")
        return 1
    patches = patch_files()
    commits = git("rev-list", "--reverse", f"{UPSTREAM_TAG}..HEAD").split()
    ok = len(patches) == len(commits) and all(
        applied_matches(p, c) for p, c in zip(patches, commits))
    dirty = bool(git("status", "--porcelain"))
    print(("matches" if ok else "differs from") + " patches/" + (", with uncommitted edits" if dirty else ""))
    return 0 if ok and not dirty else 1


def main() -> int:
    global VENDOR, PATCHES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="apply", choices=["apply", "export", "status"])
    parser.add_argument("--vendor", type=Path, default=VENDOR, help="the llama.cpp tree (default: %(default)s)")
    parser.add_argument("--patches", type=Path, default=PATCHES, help="the patch series (default: %(default)s)")
    args = parser.parse_args()
    VENDOR, PATCHES = args.vendor.resolve(), args.patches.resolve()
    try:
        if args.command == "apply":
            apply()
        elif args.command == "export":
            export()
        else:
            return status()
    except VendorError as exc:
        print(f"vendor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
