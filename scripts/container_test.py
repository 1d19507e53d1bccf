"""Build docker/Dockerfile's image and run it, with no registry at hand: a minimal Debian root
file system (debootstrap, with python3 and its venv module) imported as the base image
(podman import), ``podman build`` on that base (the Dockerfile's BASE_IMAGE argument), then
``podman run`` serving a random generator of the demo's shape. Checks, against the server in
the container: the web page and its files, ``POST /api/v1.0/bird`` and its images at their
sizes, that it runs as the unprivileged user, and that its HEALTHCHECK passes. Prints each
step's time.

    python scripts/container_test.py             # make container-test
    python scripts/container_test.py --keep      # leave the container running afterwards

Needs root (debootstrap, rootful podman) and Debian's packages debootstrap, podman and runc
(runc where crun cannot start containers, as in a sandbox with hybrid cgroups):
``apt-get install debootstrap podman runc``. The Debian mirror is the one this machine's apt
uses. pip inside the build is given this machine's pip configuration (``pip config list``),
and the local folders and files it names are bind-mounted read-only at the same paths, so
that torch comes from where it comes here (``--torch-index-url`` to take it elsewhere).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from benchmark import make_random_model  # noqa: E402  (scripts/benchmark.py)

from attngan.config import load_config  # noqa: E402

IMAGE = "localhost/attngan-serve:container-test"
CONTAINER = "attngan-serve-container-test"
SERVED_CFG = "cfg/eval_shapes.yml"
TIMES: list[tuple[str, float]] = []


def step(name: str):
    """Context manager timing one step into TIMES, printed as it ends."""

    class Timed:
        def __enter__(self):
            print(f"[container-test] {name} ...", flush=True)
            self.start = time.monotonic()

        def __exit__(self, *exc):
            took = time.monotonic() - self.start
            TIMES.append((name, took))
            print(f"[container-test] {name}: {took:.1f} s{' (failed)' if exc[0] else ''}", flush=True)

    return Timed()


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("  $ " + shlex.join(argv), flush=True)
    return subprocess.run(argv, check=kwargs.pop("check", True), **kwargs)


def apt_mirror() -> tuple[str, str]:
    """(mirror, suite) of this machine's first Debian apt source."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")) + [Path("/etc/apt/sources.list")]:
        text = path.read_text() if path.is_file() else ""
        uris, suites = re.search(r"^URIs:\s*(\S+)", text, re.M), re.search(r"^Suites:\s*(\S+)", text, re.M)
        if uris and suites and uris.group(1).rstrip("/").endswith("/debian"):
            return uris.group(1), suites.group(1)
        line = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+(\S+)", text, re.M)
        if line:
            return line.group(1), line.group(2)
    return "http://deb.debian.org/debian", "bookworm"


def podman_options(base: str) -> tuple[list[str], list[str]]:
    """(podman's global options, run/build options) that let a container start here: none
    where podman's defaults work; else runc (crun refuses hybrid cgroup v1/v2 hosts) and this
    process's own open-file limit (podman's default asks more, which needs CAP_SYS_RESOURCE)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = [f"--ulimit=nofile={nofile}:{nofile}", "--ulimit=nproc=32768:32768"]
    tries = [([], []), ([], limits)] + ([(["--runtime", "runc"], limits)] if shutil.which("runc") else [])
    for runtime, options in tries:
        probe = subprocess.run(
            ["podman", *runtime, "run", "--rm", *options, base, "true"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            print(f"  podman runs containers with: {shlex.join(['podman', *runtime, 'run', *options]) or 'defaults'}")
            return runtime, options
        print(f"  podman {shlex.join(runtime + options) or '(defaults)'}: {probe.stderr.strip().splitlines()[-1]}")
    raise SystemExit("container-test: podman cannot start a container here (see the errors above)")


def pip_config(work: Path) -> list[str]:
    """podman build options that give pip in the build this machine's pip configuration: a
    pip.conf of ``pip config list`` at /etc/pip.conf, and every local path it names mounted
    read-only (a local index's parent folder: its files may lie beside simple/)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    mounts: set[Path] = set()
    # PIP_* variables (":env:") override the files' settings, as in pip: they come last
    for line in sorted(listing.splitlines(), key=lambda line: line.startswith(":env:")):
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        value = value.strip().strip("'\"")
        sections.setdefault("global" if section in ("", ":env:") else section, {})[name] = value
        for token in value.split():
            path = Path(token.removeprefix("file://"))
            if token.startswith(("/", "file:///")) and path.exists():
                mounts.add(path.parent if path.name == "simple" else path)
    conf = work / "pip.conf"
    conf.write_text("".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in sections.items()))
    print("  pip in the build: " + "; ".join(listing.splitlines()))
    return [f"--volume={conf}:/etc/pip.conf:ro"] + [f"--volume={m}:{m}:ro" for m in sorted(mounts)]


def check_page_and_bird(url: str) -> None:
    """The web page and its files, and /api/v1.0/bird with its images at their sizes."""
    with httpx.Client(base_url=url, timeout=60) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page
        links = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert links and all(c.get(link).status_code == 200 for link in links), links
        print(f"  GET / : 200, {len(page.text)} characters; its files {', '.join(links)}: 200")
        bird = c.post("/api/v1.0/bird", json={"caption": "a red circle at the top left on a blue background"})
        assert bird.status_code == 201, bird.text
        fields = bird.json()["bird"]
        for name, size in (("small", 64), ("medium", 128)):
            png = c.get(fields[name])
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(png.content)).size == (size, size)
        assert fields["large"] is None  # the demo's generator has two stages
        print(f"  POST /api/v1.0/bird: 201, small 64x64 and medium 128x128 PNGs served, seed {fields['seed']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: this machine's apt source)")
    parser.add_argument("--suite", default=None, help="Debian release (default: this machine's apt source's)")
    parser.add_argument("--rebuild-base", action="store_true", help="debootstrap again even if the base image exists")
    parser.add_argument(
        "--torch-index-url", default="", help="where pip gets torch in the build (default: pip's configuration)"
    )
    parser.add_argument("--port", type=int, default=18080, help="host port of the container's 8080")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("container-test: needs root (debootstrap and rootful podman)")
    for tool in ("debootstrap", "podman"):
        if shutil.which(tool) is None:
            raise SystemExit(f"container-test: {tool} is missing: apt-get install debootstrap podman runc")
    mirror, suite = apt_mirror()
    mirror, suite = args.mirror or mirror, args.suite or suite
    base = f"localhost/attngan-debian-base:{suite}"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="attngan-container-") as tmp:
        work = Path(tmp)
        exists = subprocess.run(["podman", "image", "exists", base]).returncode == 0
        if args.rebuild_base or not exists:
            rootfs = work / "rootfs"
            with step(f"debootstrap {suite} from {mirror}"):
                run(
                    ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates"]
                    + [suite, str(rootfs), mirror],
                    stdout=subprocess.DEVNULL,
                )
            with step(f"podman import as {base}"):
                tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
                run(["podman", "import", "-", base], stdin=tar.stdout, stdout=subprocess.DEVNULL)
                assert tar.wait() == 0
            shutil.rmtree(rootfs)
        else:
            print(f"[container-test] base image {base} exists (--rebuild-base to make it again)")
        runtime, limits = podman_options(base)
        podman = ["podman", *runtime]
        with step("podman build"):
            run(
                podman
                + ["build", "--format", "docker", "-f", "docker/Dockerfile"]
                + ["--ignorefile", "docker/Dockerfile.dockerignore", "-t", IMAGE]
                + [f"--build-arg=BASE_IMAGE={base}", f"--build-arg=TORCH_INDEX_URL={args.torch_index_url}"]
                + limits
                + pip_config(work)
                + ["."],
                cwd=ROOT,
            )
        size = run(podman + ["image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True, text=True)
        print(f"  image {IMAGE}: {int(size.stdout) / 2**30:.2f} GiB")

        with step("random generator of the demo's shape"):
            model = work / "model"
            cfg = load_config(ROOT / SERVED_CFG)
            make_random_model(cfg, model, num_images=20)
            for path in [model, *model.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's user
        work.chmod(0o755)
        served = ["--cfg", SERVED_CFG, "--gpu", "-1", "--data_dir", "model/data", "--set"]
        served += ["TRAIN.NET_G=model/netG_random.pth", "TRAIN.NET_E=model/enc/text_encoder0.pth"]
        run(podman + ["rm", "--force", "--ignore", CONTAINER], stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}"
        try:
            with step("podman run, until /v1/health answers"):
                run(
                    podman
                    + ["run", "--detach", "--name", CONTAINER, *limits, "--publish", f"127.0.0.1:{args.port}:8080"]
                    + ["--volume", f"{model}:/app/model:ro", IMAGE, *served],
                    stdout=subprocess.DEVNULL,
                )
                deadline = time.monotonic() + 300
                while True:
                    try:
                        if httpx.get(url + "/v1/health", timeout=5).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    state = subprocess.run(
                        podman + ["inspect", "--format", "{{.State.Status}}", CONTAINER], capture_output=True, text=True
                    )
                    assert state.stdout.strip() == "running", f"the container is {state.stdout.strip()}"
                    assert time.monotonic() < deadline, "the server in the container did not answer in 300 s"
                    time.sleep(1)
            with step("the page and /api/v1.0/bird from the container"):
                check_page_and_bird(url)
                uid = run(podman + ["exec", CONTAINER, "id", "-u"], capture_output=True, text=True).stdout.strip()
                assert uid == "1000", uid
                print("  the server runs as uid 1000 (attngan)")
            with step("the image's HEALTHCHECK"):
                check = run(podman + ["healthcheck", "run", CONTAINER], capture_output=True, text=True, check=False)
                assert check.returncode == 0, f"HEALTHCHECK failed: {check.stdout}{check.stderr}"
                print(f"  podman healthcheck run: {check.stdout.strip() or 'healthy'} (exit 0)")
        except BaseException:
            run(podman + ["logs", "--tail", "40", CONTAINER], check=False)
            raise
        finally:
            if not args.keep:
                run(podman + ["stop", "--time", "10", CONTAINER], check=False, stdout=subprocess.DEVNULL)
                run(podman + ["rm", "--force", CONTAINER], check=False, stdout=subprocess.DEVNULL)
    total = time.monotonic() - start
    print("[container-test] passed; " + ", ".join(f"{name}: {took:.0f} s" for name, took in TIMES))
    print(f"[container-test] total {total:.0f} s ({total / 60:.1f} min)")
    if args.keep:
        print(f"[container-test] {CONTAINER} is still running at {url}/ (podman rm -f {CONTAINER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
