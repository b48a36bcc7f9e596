"""A network namespace joined to this machine by a veth pair, for end-to-end tests.

The LiveKit SDK's WebRTC never offers loopback candidates, so a test needs a non-loopback
address that stays on this machine: a veth pair into a namespace the test creates. Run the
server inside the namespace (``VethNamespace.command``) and the SDK clients in the root
namespace; all media then flows over the pair and nowhere else.

Names include the process id and are removed on exit, even when the test fails; namespaces
left behind by killed runs are removed the next time one is created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

IP = shutil.which("ip") or "/usr/sbin/ip"
_SUBNET = ipaddress.ip_network("10.213.0.0/16")
_PREFIX_LEN = 30
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class VethNamespace:
    name: str
    host_interface: str
    namespace_interface: str
    host_address: str  # the root-namespace end of the pair
    namespace_address: str  # the address inside the namespace

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return [IP, "netns", "exec", self.name, *argv]


def unavailable_reason() -> str | None:
    """Why namespaces cannot be created here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP):
        return "the `ip` command (iproute2) is missing"
    return None


@contextlib.contextmanager
def veth_namespace(tag: str = "lkt") -> Iterator[VethNamespace]:
    """Create a namespace with a /30 veth link to the root namespace; remove it afterwards."""
    tag = re.sub(r"[^a-z]", "", tag.lower())[:4] or "lkt"
    _remove_stale(tag)
    pid = os.getpid()
    n = next(_counter)
    ns = VethNamespace(
        name=f"{tag}-{pid}-{n}",
        host_interface=f"{tag}{pid % 100000}h{n}"[:15],
        namespace_interface=f"{tag}{pid % 100000}n{n}"[:15],
        **_free_addresses(pid, n),
    )
    try:
        _ip("netns", "add", ns.name)
        _ip(
            "link", "add", ns.host_interface, "type", "veth", "peer", "name", ns.namespace_interface
        )
        _ip("link", "set", ns.namespace_interface, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_address}/{_PREFIX_LEN}", "dev", ns.host_interface)
        _ip("link", "set", ns.host_interface, "up")
        _ip(
            "-n",
            ns.name,
            "addr",
            "add",
            f"{ns.namespace_address}/{_PREFIX_LEN}",
            "dev",
            ns.namespace_interface,
        )
        _ip("-n", ns.name, "link", "set", ns.namespace_interface, "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        _remove(ns.name, ns.host_interface)


def _free_addresses(pid: int, n: int) -> dict[str, str]:
    """A /30 of 10.213.0.0/16 that no interface of this machine uses yet."""
    in_use = set(
        subprocess.run(
            [IP, "-o", "-4", "addr"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    subnets = list(_SUBNET.subnets(new_prefix=_PREFIX_LEN))
    start = (pid * 31 + n * 7) % len(subnets)
    for offset in range(len(subnets)):
        subnet = subnets[(start + offset) % len(subnets)]
        host, inside = (str(a) for a in list(subnet.hosts())[:2])
        if not any(word.startswith((f"{host}/", f"{inside}/")) for word in in_use):
            return {"host_address": host, "namespace_address": inside}
    raise RuntimeError("no free /30 left in 10.213.0.0/16")


def _remove(name: str, host_interface: str) -> None:
    subprocess.run([IP, "link", "del", host_interface], capture_output=True, check=False)
    subprocess.run([IP, "netns", "del", name], capture_output=True, check=False)


def _remove_stale(tag: str) -> None:
    """Remove namespaces of this tag whose creating process is gone."""
    listing = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        match = re.fullmatch(rf"{tag}-(\d+)-(\d+)", line.split()[0] if line.split() else "")
        if match and not _alive(int(match.group(1))):
            pid, n = int(match.group(1)), int(match.group(2))
            _remove(line.split()[0], f"{tag}{pid % 100000}h{n}"[:15])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip(*args: str) -> None:
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
