"""Keep secrets (API keys, tokens) out of every process that evaluates candidates.

The LLM clients read their keys once, when they are made; after that the run has no
use for them in its environment, and every process it starts (evaluation workers,
Dask workers, sandbox templates) inherits that environment. So `withdraw` removes
them before any worker starts, and a worker that still holds one (a remote Dask
worker started by hand with a key exported) says so.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
log = logging.getLogger("evolve")
_warned = False


def secret_names(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """The names in `environ` that look like they hold a secret."""
    return sorted(name for name in environ if SECRET_NAME.search(name))


def withdraw(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove the secret-looking variables from `environ`; returns their names."""
    names = secret_names(environ)
    for name in names:
        del environ[name]
    return names


def warn_if_present() -> None:
    """Once per process: warn if this (worker) process holds secret-looking variables."""
    global _warned
    names = secret_names()
    if names and not _warned:
        _warned = True
        log.warning("this evaluation worker's environment holds %s; start workers without "
                    "secrets (the sandbox never passes them to candidates)", ", ".join(names))
