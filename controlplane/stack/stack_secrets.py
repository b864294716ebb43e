"""``DIR/secrets.json``: the embedded stack's own secrets, generated once per data directory.

``trailpay up`` must not run with the callback tokens and webhook secret published in this
repository, nor let anyone on the machine into its PostgreSQL. So the first start of a data
directory draws random values, writes them to a file only its owner can read (mode 0600),
and every later start reuses them: callbacks a provider sandbox still holds, and the
database's password, stay valid across restarts. Every process given the data directory
reads them back through its settings (:class:`trailpay.secret_settings.DataDirSecrets`); a
``TRAILPAY_*`` variable that is set wins over the file, which never holds a value given so.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from trailpay.pii_crypto import new_key
from trailpay.secret_settings import DATA_DIR_SECRET_FIELDS, DATA_DIR_SECRETS_FILE

SECRETS_FILE = DATA_DIR_SECRETS_FILE

#: Generated values: the settings field (or ``postgres_password``) -> how one is drawn.
GENERATED: dict[str, Callable[[], str]] = {
    "mpesa_callback_token": lambda: secrets.token_urlsafe(32),
    "airtel_callback_token": lambda: secrets.token_urlsafe(32),
    "stripe_webhook_secrets": lambda: f"whsec_{secrets.token_hex(24)}",
    "postgres_password": lambda: secrets.token_urlsafe(24),
    "analytics_service_token": lambda: secrets.token_urlsafe(32),
    "state_pii_keys": new_key,
}
#: The ones that are TrailPay settings, read back by :class:`trailpay.secret_settings.DataDirSecrets`
#: (the password goes into the database URL instead).
SETTINGS_FIELDS = DATA_DIR_SECRET_FIELDS


def secrets_path(data_dir: Path) -> Path:
    return data_dir / SECRETS_FILE


def read_secrets(data_dir: Path) -> dict[str, str]:
    """The stored secrets, or nothing when there is no file or it is not ours to read."""
    try:
        loaded = json.loads(secrets_path(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _write_private(path: Path, values: dict[str, str]) -> None:
    """Write ``values`` to ``path`` readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def ensure_secrets(data_dir: Path) -> dict[str, str]:
    """The data directory's secrets, generating (and storing) whatever is missing; the
    file's mode is put back to 0600 if someone widened it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = secrets_path(data_dir)
    values = read_secrets(data_dir)
    missing = [name for name in GENERATED if not values.get(name)]
    if missing:
        values.update({name: GENERATED[name]() for name in missing})
        _write_private(path, values)
    elif stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)
    return values
