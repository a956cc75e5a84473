"""Boot artifacts per flavour, built once and cached by tests/xen/image/build-image.sh."""
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

IMAGE_SCRIPTS = Path(__file__).resolve().parent.parent / "image"
FLAVOURS = ("bookworm", "trixie")
XEN_MINOR = {"bookworm": "4.17", "trixie": "4.20"}


class ImageUnavailable(RuntimeError):
    """The image is not cached and this machine cannot build it (not root, tools missing)."""


@dataclass
class Image:
    flavour: str
    path: Path
    manifest: dict
    seconds: float  # wall time of this ensure_image() call
    built_now: bool

    @property
    def xen_minor(self):
        return self.manifest["xen_minor"]

    def file(self, name):
        return self.path / name


def read_manifest(path):
    manifest = {}
    for line in (path / "manifest").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            manifest[key] = value
    return manifest


def ensure_image(flavour, log=sys.stderr):
    """Return the flavour's image, building it first when its inputs changed."""
    if flavour not in FLAVOURS:
        raise ValueError("unknown flavour %r (expected one of %s)" % (flavour, ", ".join(FLAVOURS)))
    started_wall = time.time()
    started = time.monotonic()
    proc = subprocess.run(
        [str(IMAGE_SCRIPTS / "build-image.sh"), flavour],
        stdout=subprocess.PIPE, stderr=log, text=True, check=False,
    )
    seconds = time.monotonic() - started
    if proc.returncode == 3:
        raise ImageUnavailable("cannot build the %s image here (see the message above)" % flavour)
    if proc.returncode != 0:
        raise RuntimeError("building the %s image failed (exit %d)" % (flavour, proc.returncode))
    path = Path(proc.stdout.strip().splitlines()[-1])
    built_now = os.stat(path / "manifest").st_mtime >= started_wall - 1
    return Image(flavour, path, read_manifest(path), seconds, built_now)
