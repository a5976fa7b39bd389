"""Debian root filesystems for workers: the container image's (containers/debian-image.sh) and an
emulated pool's (farm/emulation.py). Made from local material with debootstrap, with
buildbot-worker and our worker-side tools' dependencies in /opt/wheelwright, and kept as tarballs
in a cache: debootstrap takes minutes, and under emulation several more.

    python -m wheelwright.farm.roots --arch arm64 --cache DIR [DEST]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

from wheelwright.common.files import write_atomic
from wheelwright.common.runtime import DISTRIBUTION

SUITE = "bookworm"
# What a build may need of the system (compilers, headers, patch) and what makes its venvs.
PACKAGES = (
    "python3",
    "python3-venv",
    "python3-dev",
    "gcc",
    "libc6-dev",
    "patch",
    "ca-certificates",
)
TOOLS_PREFIX = "/opt/wheelwright"


def host_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def debian_mirror() -> str:
    """The mirror this machine's apt uses (a deb822 sources file, or sources.list)."""
    for path, marker in (
        ("/etc/apt/sources.list.d/debian.sources", "URIs:"),
        ("/etc/apt/sources.list", "deb"),
    ):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(marker + " "):
                    return next(w for w in line.split()[1:] if "://" in w)
        except (FileNotFoundError, StopIteration):
            continue
    raise RuntimeError(
        "no Debian mirror: neither /etc/apt/sources.list.d/debian.sources nor /etc/apt/sources.list names one"
    )


def worker_requirements() -> list[str]:
    """buildbot-worker and what our worker-side tools import, at the versions the master runs."""
    ours = [Requirement(r) for r in importlib.metadata.requires(DISTRIBUTION) or []]
    names = ["buildbot-worker", *(r.name for r in ours if r.marker is None)]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def _chroot(root: Path, script: str) -> None:
    # env -i: the host's variables (a CA bundle path, pip's configuration) mean nothing in there.
    env = [
        "env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        *(
            f"{k}={os.environ[k]}"
            for k in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
            if k in os.environ
        ),
    ]
    proc = subprocess.run(
        ["chroot", str(root), *env, "/bin/sh", "-ec", script], capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(
            f"in the {root.name} root:\n{script}\nfailed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def _make(root: Path, arch: str, requirements: list[str], log: Path) -> None:
    native = arch == host_arch()
    # The sandbox's bubblewrap must run natively: under qemu-user a process has threads of the
    # emulator's, and the kernel refuses new namespaces to a threaded process.
    packages = ",".join(PACKAGES + (("bubblewrap",) if native else ()))
    with open(log, "w") as out:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={arch}",
                f"--include={packages}",
                SUITE,
                str(root),
                debian_mirror(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # The host's CA bundle: TLS may go through a proxy only it trusts.
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "tmp" / "host-ca.pem")
    if not native:
        _chroot(
            root,
            f"""
            dpkg --add-architecture {host_arch()}
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends bubblewrap:{host_arch()} >/dev/null
            apt-get clean
            rm -rf /var/lib/apt/lists/*""",
        )
    _chroot(
        root,
        f"""
        python3 -m venv {TOOLS_PREFIX}
        {TOOLS_PREFIX}/bin/pip install --quiet --cert /tmp/host-ca.pem --disable-pip-version-check \\
            {" ".join(requirements)}
        rm -rf /tmp/host-ca.pem /root/.cache""",
    )


def cached_root(arch: str, cache: Path) -> Path:
    """The tarball of a root of arch, made on first use."""
    requirements = worker_requirements()
    key = hashlib.sha256(repr((SUITE, arch, PACKAGES, requirements)).encode()).hexdigest()[:12]
    tarball = cache / f"debian-{SUITE}-{arch}-{key}.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        root = Path(work) / "root"
        _make(root, arch, requirements, cache / f"debian-{SUITE}-{arch}.log")
        subprocess.run(
            ["tar", "-C", str(root), "-cf", str(Path(work) / "root.tar"), "."], check=True
        )
        os.replace(Path(work) / "root.tar", tarball)
    return tarball


def unpack_root(arch: str, cache: Path, dest: Path) -> Path:
    """dest holding a root of arch (unpacked once; a half-unpacked one is started again)."""
    done = dest / ".wheelwright-root"
    if done.exists():
        return dest
    tarball = cached_root(arch, cache)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True)
    write_atomic(done, tarball.name.encode())
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "dest", type=Path, nargs="?", help="unpack the root here (default: only make its tarball)"
    )
    parser.add_argument(
        "--arch", default=None, help="Debian architecture (default: this machine's)"
    )
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    arch = args.arch or host_arch()
    print(unpack_root(arch, args.cache, args.dest) if args.dest else cached_root(arch, args.cache))


if __name__ == "__main__":
    main()
