"""The embedded Ray raydl starts: loopback only, no dashboard, Ray's token auth kept.

Read from the kernel, not from Ray's own account: every TCP socket listened on by the
processes of this test session's Ray (this process and all its descendants: GCS,
raylet, agents, workers) is looked up in /proc."""

import ipaddress
import os
import stat
import struct
from pathlib import Path

import pytest

from raydl.runtime import AUTH_TOKEN_FILE

pytestmark = pytest.mark.usefixtures("ray_session")

DASHBOARD_PORTS = range(8265, 8265 + 51)  # Ray's dashboard port and its --port-retries


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp{,6} addresses: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(struct.pack("<I", w) for w in struct.unpack(f">{len(raw) // 4}I", raw))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    addr = ipaddress.IPv6Address(words)
    return addr.ipv4_mapped or addr


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on."""
    inodes = set()
    try:
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:  # gone meanwhile
        return []
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (Path("/proc") / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                addr, port = fields[1].split(":")
                found.append((str(_address(addr)), int(port, 16)))
    return found


def _title(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
    except OSError:
        return "?"


def test_embedded_ray_listens_on_loopback_only_with_no_dashboard() -> None:
    import ray

    # an actor, so a worker process (with its own gRPC server) is among those checked
    @ray.remote(num_cpus=0)
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    probe = Probe.remote()
    worker = ray.get(probe.pid.remote())
    try:
        listeners = {pid: _listening(pid) for pid in _descendants(os.getpid())}
    finally:
        ray.kill(probe)
    assert worker in listeners
    sockets = [(pid, addr, port) for pid, found in listeners.items() for addr, port in found]
    for pid, addr, port in sockets:
        print(f"{addr}:{port}  {_title(pid)}")
    titles = " ".join(_title(pid) for pid, found in listeners.items() if found)
    for server in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"):
        assert server in titles  # the walk found Ray's own servers, not just this process
    exposed = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not [s for s in sockets if s[2] in DASHBOARD_PORTS]
    assert ray._private.worker.global_worker.node.address_info["webui_url"] == ""


def test_embedded_ray_refuses_a_wrong_token() -> None:
    """Ray 2.60 turns token auth on for a new local cluster unless RAY_AUTH_MODE says
    otherwise (ray._private.authentication.authentication_token_setup.
    enable_token_auth_by_default); raydl keeps it and makes the token file private."""
    import grpc
    import ray
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    assert os.environ.get("RAY_AUTH_MODE") == "token"
    info = os.stat(AUTH_TOKEN_FILE)
    assert stat.S_IMODE(info.st_mode) & 0o077 == 0  # no one else can read it
    token = Path(AUTH_TOKEN_FILE).read_text().strip()

    gcs = ray._private.worker.global_worker.node.gcs_address
    with grpc.insecure_channel(gcs) as channel:  # a plain client: no token of its own
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        request = gcs_service_pb2.GetAllNodeInfoRequest()
        for metadata in ([], [("authorization", "Bearer not-the-token")]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetAllNodeInfo(request, metadata=metadata, timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # the same request with the right token goes through: the refusal was the token
        reply = stub.GetAllNodeInfo(request, metadata=[("authorization", f"Bearer {token}")], timeout=30)
        assert len(reply.node_info_list) == 1
    assert gcs.rsplit(":", 1)[0] == "127.0.0.1"


def test_embedded_ray_starts_no_autoscaler_or_log_monitor() -> None:
    """A one-machine Ray of one program has nothing to scale and sends no worker logs to
    the driver: raydl starts it without those two Python processes (each ~0.7 CPU-s at
    start and a second to stop), through a Ray-private hook this catches if an upgrade
    ignores it. Ray's own record and the process table agree."""
    import ray

    node = ray._private.worker.global_worker.node
    assert set(node.all_processes) == {"gcs_server", "raylet", "dashboard"}
    titles = " ".join(_title(pid) for pid in _descendants(os.getpid()))
    assert "raylet" in titles and "gcs_server" in titles
    assert "autoscaler/_private/monitor.py" not in titles
    assert "log_monitor.py" not in titles


def test_a_new_token_file_is_owner_only_from_its_first_byte(tmp_path: Path) -> None:
    """Ray writes ~/.ray/auth_token with the umask's mode while it starts (raydl used to
    chmod it only after): in a fresh home, with a permissive umask, raydl makes the file
    0600 before Ray starts, and the Ray it starts runs on that token."""
    import subprocess
    import sys

    script = (
        "import os, stat\n"
        "os.umask(0o022)\n"
        "import ray._private.worker as worker\n"
        "real_init = worker.init\n"
        "def checked_init(*a, **k):\n"
        "    mode = stat.S_IMODE(os.stat(os.path.expanduser('~/.ray/auth_token')).st_mode)\n"
        "    print('mode at ray.init', oct(mode), flush=True)\n"
        "    return real_init(*a, **k)\n"
        "import ray\n"
        "ray.init = checked_init\n"
        "from raydl.runtime import init_ray, shutdown_ray\n"
        "init_ray(num_cpus=1)\n"
        "from ray._private.authentication.authentication_token_setup import _get_default_token_path\n"
        "print('token used', open(_get_default_token_path()).read() == open(os.path.expanduser('~/.ray/auth_token')).read())\n"
        "shutdown_ray()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), RAY_ADDRESS="")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mode at ray.init 0o600" in done.stdout
    token = tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) >= 32
