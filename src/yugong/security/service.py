"""One object the application holds for access: ``app.state.security``."""

from __future__ import annotations

from argon2 import PasswordHasher

from yugong.core.errors import Unauthorized
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.security.apikeys import ApiKeys, looks_like_key
from yugong.security.audit import AuditLog
from yugong.security.audit_hooks import install as install_audit_hooks
from yugong.security.blocks import Blocks, Detection
from yugong.security.events import SecurityEvents
from yugong.security.passwords import PasswordPolicy, Passwords
from yugong.security.principal import Principal
from yugong.security.secrets import SecretBox
from yugong.security.sessions import LockoutPolicy, Sessions
from yugong.security.tokens import TokenCodec
from yugong.security.totp import Totp
from yugong.security.users import Users


class Security:
    """Users, sessions (tokens), API keys, security events and the box for secrets at rest,
    over one database and signing key.

    ``hasher`` and ``policy`` are for deployments (and tests) that tune argon2's cost or
    the password rules.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        hasher: PasswordHasher | None = None,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.passwords = Passwords(hasher)
        self.policy = policy or PasswordPolicy.from_settings(settings)
        self.codec = TokenCodec(
            settings.signing_key(),
            access_ttl_s=settings.access_token_minutes * 60,
            refresh_ttl_s=settings.refresh_token_days * 86_400,
        )
        self.sessions = Sessions(
            db, self.codec, self.passwords, lockout=LockoutPolicy.from_settings(settings)
        )
        self.users = Users(db, self.passwords, self.sessions, self.policy)
        self.apikeys = ApiKeys(db)
        self.events = SecurityEvents(db)
        self.audit = AuditLog(db, head_file=settings.data_dir / "audit.head")
        install_audit_hooks(db, self.audit)  # every change to registry and access tables
        self.blocks = Blocks(db, block_loopback=settings.block_loopback)
        self.detection = Detection(
            self.events,
            self.blocks,
            failed_logins_per_ip=settings.block_failed_logins_per_ip,
            duration_s=settings.block_duration_s,
        )
        self.box = SecretBox.from_settings(settings)  # secrets at rest
        # Logins report failures and locks, are audited, and read sealed TOTP seeds.
        self.sessions.events, self.sessions.audit = self.events, self.audit
        self.sessions.box = self.box
        self.users.audit = self.audit
        self.totp = Totp(db, self.box, self.sessions, issuer=settings.totp_issuer)

    def authenticate(self, credential: str) -> Principal:
        """The caller behind a bearer credential: an API key (``ygk_...``) or an access
        token."""
        credential = credential.strip()
        if not credential:
            raise Unauthorized("missing credentials")
        if looks_like_key(credential):
            return self.apikeys.authenticate(credential)
        return self.sessions.authenticate(credential)
