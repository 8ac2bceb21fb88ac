"""Put the docs site's two JavaScript dependencies, pinned and checked, where the site serves them from:
``docs/javascripts/vendor/``. With them the site needs no network, served or opened from disk (``file://``).

- MathJax 3's ``tex-svg.js`` typesets the formulas. It is one file that carries its own glyphs (no web fonts,
  which browsers refuse to load from ``file://``).
- iframe-worker's shim lets Material's search run its worker from ``file://`` (the theme's ``offline``
  plugin would otherwise fetch it from unpkg.com).

Each comes from the npm registry's tarball of a pinned release, checked against the registry's published
SHA-512 before anything is written, with its licence beside it. ``VERSION`` is written last, so a folder
holding it is complete. Usage: ``python scripts/vendor_assets.py`` (``make docs`` and ``make test`` run it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

#: package -> (version, published SHA-512, {file in the tarball: name in the site})
PACKAGES = {
    "mathjax": (
        "3.2.2",
        "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        {"package/es5/tex-svg.js": "tex-svg.js", "package/LICENSE": "LICENSE"},
    ),
    "iframe-worker": (
        "1.0.4",
        "roeaaI+Lg1LJNfgpCjoRe/+WzEjy9+Z08LoEvu85MCPbBjwm+qXz8Ag5U05lHa6V1CysZyGzE0SOkAtSUA5q7Q==",
        {"package/shim/index.js": "shim.js", "package/LICENSE": "LICENSE"},
    ),
}
VENDOR = Path(__file__).resolve().parent.parent / "docs" / "javascripts" / "vendor"


def vendor(name: str, version: str, sha512: str, files: dict[str, str]) -> None:
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        sys.exit(f"error: cannot download {url} ({exc}); the docs site needs it")
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != sha512:
        sys.exit(f"error: {url}: SHA-512 {got}, expected {sha512}; nothing written")
    dest = VENDOR / name
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, target in files.items():
            (dest / target).write_bytes(archive.extractfile(member).read())
    print(f"wrote {dest}: {' '.join(files.values())} ({name} {version})")


def main() -> int:
    for name, (version, sha512, files) in PACKAGES.items():
        vendor(name, version, sha512, files)
    (VENDOR / "VERSION").write_text("".join(f"{name} {version}\n" for name, (version, _, _) in PACKAGES.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
