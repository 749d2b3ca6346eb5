"""What the throwaway Postfix instances of the tests share: the binary, its services, how
to run it and when a test may skip it. Each test writes its own main.cf; every Postfix
listens on a free loopback port and lives in a temporary folder.
"""

import os
import socket
import subprocess
from pathlib import Path

import pytest

POSTFIX = Path("/usr/sbin/postfix")

# master.cf: smtpd on the test's loopback port, and the services a relay needs
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_postfix() -> None:
    """Skip (or, with HERALD_REQUIRE_POSTFIX=1 as in CI, fail) saying what is missing."""
    reason = None
    if not POSTFIX.exists():
        reason = "Debian's postfix is not installed (apt-get install postfix)"
    elif os.geteuid() != 0:
        reason = "a throwaway Postfix must start as root: its master drops to the postfix user"
    if reason:
        if os.environ.get("HERALD_REQUIRE_POSTFIX"):
            pytest.fail(reason)
        pytest.skip(reason)


def run_postfix(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`postfix -c CONFIG ARGS...` (start, stop, ...)."""
    return subprocess.run(
        [str(POSTFIX), "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_postfix_umask,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postfix_umask() -> None:
    """Postfix's own users must reach its queue: not the 077 Herald's commands set for
    themselves, in this very process, before the test started Postfix."""
    os.umask(0o022)
