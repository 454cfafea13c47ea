"""Confine the calling process with the kernel's own mechanisms; no root, no helpers.

Applied in a sandboxed child before any untrusted code runs, in this order:

1. `no_new_privs`, so that nothing gains privileges later (and Landlock and
   seccomp may be used without CAP_SYS_ADMIN);
2. **Landlock** (Linux >= 5.13): files may be read only beneath `read_paths`, and
   read and written only beneath `write_paths`; no TCP bind or connect (ABI >= 4);
   no signals to, and no abstract UNIX sockets of, processes outside the jail
   (ABI >= 6). Landlock also forbids ptrace of any process outside the jail;
3. **seccomp** (x86_64, aarch64): no new processes (threads are allowed), no sockets,
   no io_uring, no ptrace or cross-process memory access, no pidfd tricks, and
   signals only to the process itself;
4. every capability is dropped, so a child started as root is not root any more.

Each step degrades alone: `apply()` returns what it achieved, and `probe()` tells
beforehand what this kernel offers. The module imports only the standard library:
a sandboxed child loads it by file path.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

# syscall numbers: landlock_create_ruleset, landlock_add_rule, landlock_restrict_self
_LANDLOCK_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1,
                     5: (1 << 16) - 1}  # ABI 2: REFER, 3: TRUNCATE, 5: IOCTL_DEV
_FILE_ONLY_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)
_NET_TCP = 1 | 2  # BIND_TCP | CONNECT_TCP
_SCOPES = 1 | 2  # ABSTRACT_UNIX_SOCKET | SIGNAL

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT = 38, 22, 24, 47
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_CLONE_THREAD = 0x00010000
# name: (x86_64, aarch64); None where the architecture has no such call
_DENIED = {
    "socket": (41, 198), "fork": (57, None), "vfork": (58, None), "clone3": (435, 435),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "io_uring_setup": (425, 425), "pidfd_open": (434, 434), "pidfd_getfd": (438, 438),
    "pidfd_send_signal": (424, 424), "tkill": (200, 130), "kcmp": (312, 272),
    "process_madvise": (440, 440), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "unshare": (272, 97), "setns": (308, 268),
}
_CLONE = {"x86_64": 56, "aarch64": 220}
# signal calls allowed only with the process itself (or 0 / -pid: its own group) as target
_SIGNALLING = {"kill": (62, 129), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
               "rt_tgsigqueueinfo": (297, 240)}
_ERRNO_BY_CALL = {"clone3": 38}  # ENOSYS: glibc then falls back to clone, which we check

_libc = ctypes.CDLL(None, use_errno=True)


def _arch() -> str:
    return platform.machine()


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    numbers = _LANDLOCK_SYSCALLS.get(_arch())
    if numbers is None:
        return 0
    version = _libc.syscall(numbers[0], None, ctypes.c_size_t(0),
                            ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, version)


def probe() -> dict:
    """What `apply` can reach on this machine, without applying anything."""
    abi = landlock_abi()
    return _report(abi, filesystem=abi >= 1, seccomp=_arch() in _AUDIT_ARCH)


def _report(abi: int, filesystem: bool, seccomp: bool) -> dict:
    network = seccomp or abi >= 4
    signals = seccomp or abi >= 6
    complete = filesystem and network and signals and seccomp
    missing = [name for name, ok in (("filesystem", filesystem), ("network", network),
                                     ("signals", signals), ("seccomp", seccomp)) if not ok]
    return {"level": "full" if complete else ("partial" if filesystem or seccomp else "none"),
            "landlock_abi": abi, "filesystem": filesystem, "network": network,
            "signals": signals, "seccomp": seccomp, "missing": missing}


def describe(report: dict) -> str:
    """One line for a person: the level and what is missing."""
    if report["level"] == "full":
        return f"full (Landlock ABI {report['landlock_abi']} + seccomp)"
    return (f"{report['level']}: no {', no '.join(report['missing'])} isolation "
            f"(Landlock ABI {report['landlock_abi']}, kernel {platform.release()})")


def apply(read_paths: list[str], write_paths: list[str]) -> dict:
    """Confine this process (see the module docstring); returns what was achieved."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    abi = landlock_abi()
    filesystem = abi >= 1 and _landlock(abi, read_paths, write_paths)
    seccomp = _seccomp(os.getpid())
    _drop_capabilities()
    return _report(abi, filesystem, seccomp)


def _landlock(abi: int, read_paths: list[str], write_paths: list[str]) -> bool:
    create, add_rule, restrict = _LANDLOCK_SYSCALLS[_arch()]
    fs_rights = _FS_RIGHTS_BY_ABI[max(v for v in _FS_RIGHTS_BY_ABI if v <= abi)]
    attr = struct.pack("<Q", fs_rights)
    if abi >= 4:
        attr += struct.pack("<Q", _NET_TCP)
    if abi >= 6:
        attr += struct.pack("<Q", _SCOPES)
    ruleset = _libc.syscall(create, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        for rights, paths in ((_FS_READ_FILE | _FS_READ_DIR, read_paths),
                              (fs_rights, write_paths)):
            for path in paths:
                _allow(add_rule, ruleset, path, rights)
        return _libc.syscall(restrict, ruleset, ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def _allow(add_rule: int, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        if not os.path.isdir(path):
            rights &= _FILE_ONLY_RIGHTS
        rule = struct.pack("<Qi", rights, fd)  # struct landlock_path_beneath_attr, packed
        if _libc.syscall(add_rule, ruleset, _RULE_PATH_BENEATH, rule, ctypes.c_uint32(0)):
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)


def _seccomp(pid: int) -> bool:
    arch = _arch()
    if arch not in _AUDIT_ARCH:
        return False
    column = 0 if arch == "x86_64" else 1
    prog = _filter(arch, column, pid)
    code = b"".join(struct.pack("<HBBI", *ins) for ins in prog)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(buffer))
    return _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0) == 0


def _filter(arch: str, column: int, pid: int) -> list[tuple[int, int, int, int]]:
    """A classic BPF program: deny the calls in _DENIED, let signal calls target only
    `pid`, let clone make threads only, allow everything else."""
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    arch_offset, nr_offset, arg0 = 4, 0, 16  # offsets in struct seccomp_data
    eperm = _RET_ERRNO | 1
    prog = [(ld, 0, 0, arch_offset), (jeq, 1, 0, _AUDIT_ARCH[arch]), (ret, 0, 0, eperm),
            (ld, 0, 0, nr_offset)]
    if arch == "x86_64":  # the x32 ABI's numbers have bit 30 set: refuse them all
        prog += [(jset, 0, 1, 0x40000000), (ret, 0, 0, eperm)]
    for name, numbers in _DENIED.items():
        if numbers[column] is not None:
            errno = _ERRNO_BY_CALL.get(name, 1)
            prog += [(jeq, 0, 1, numbers[column]), (ret, 0, 0, _RET_ERRNO | errno)]
    # clone: allowed only with CLONE_THREAD in its flags (arg 0)
    prog += [(jeq, 0, 4, _CLONE[arch]), (ld, 0, 0, arg0), (jset, 1, 0, _CLONE_THREAD),
             (ret, 0, 0, eperm), (ret, 0, 0, _RET_ALLOW)]
    own = pid & 0xFFFFFFFF
    group = (-pid) & 0xFFFFFFFF
    for numbers in _SIGNALLING.values():
        # target (arg 0, an int: its low 32 bits) must be pid, 0 or -pid
        prog += [(jeq, 0, 6, numbers[column]), (ld, 0, 0, arg0),
                 (jeq, 3, 0, own), (jeq, 2, 0, 0), (jeq, 1, 0, group),
                 (ret, 0, 0, eperm), (ret, 0, 0, _RET_ALLOW)]
        prog.append((ld, 0, 0, nr_offset))
    prog.append((ret, 0, 0, _RET_ALLOW))
    return prog


def _drop_capabilities() -> None:
    """Clear the bounding, ambient, effective, permitted and inheritable sets (a no-op
    for an unprivileged process)."""
    _libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    for cap in range(64):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = struct.pack("<Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two empty __user_cap_data_struct
    _libc.capset(header, data)
