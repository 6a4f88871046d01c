"""The first account: a platform admin, so a fresh installation can be signed in to."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from yugong.core.errors import Conflict
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.security.models import User
from yugong.security.passwords import PasswordPolicy, Passwords, generate_password
from yugong.security.principal import Role

log = logging.getLogger(__name__)


def ensure_platform_admin(
    db: Database,
    settings: Settings,
    *,
    passwords: Passwords | None = None,
    policy: PasswordPolicy | None = None,
) -> str | None:
    """Create ``settings.admin_username`` as platform admin when no platform admin exists.

    Uses ``settings.admin_password`` (which must pass the password policy) or generates a
    strong one. Returns the generated password, to be shown once, or None when nothing was
    generated (an admin existed, or the configured password was used).
    """
    with db.session() as s:
        exists = s.scalars(
            select(User.id).where(User.role == Role.PLATFORM_ADMIN.value).limit(1)
        ).first()
        if exists is not None:
            return None
        taken = s.scalars(select(User.id).where(User.username == settings.admin_username)).first()
        if taken is not None:
            raise Conflict(
                f"cannot create the platform admin: username {settings.admin_username!r} "
                "belongs to a tenant user; set YUGONG_ADMIN_USERNAME to another name"
            )
    generated = settings.admin_password is None
    password = generate_password() if settings.admin_password is None else settings.admin_password
    (policy or PasswordPolicy.from_settings(settings)).check(
        password, settings.admin_username, loc="admin_password"
    )
    pw = passwords or Passwords()
    try:
        with db.session() as s:
            s.add(
                User(
                    tenant_id=None,
                    username=settings.admin_username,
                    display_name="Platform administrator",
                    role=Role.PLATFORM_ADMIN.value,
                    password_hash=pw.hash(password),
                    active=True,
                )
            )
    except IntegrityError:
        # Another process started at the same moment and created it.
        return None
    log.info("created platform admin %r", settings.admin_username)
    return password if generated else None
