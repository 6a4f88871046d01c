"""The TOTP second factor (RFC 6238) on SQLite and PostgreSQL: setup, enable, login with
and without the code, replay, disable, an admin's reset, the seed sealed at rest."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import select

from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from yugong.core.settings import Settings
from yugong.security.models import SecurityEvent, User
from yugong.security.principal import Principal, Role
from yugong.security.service import Security
from yugong.security.sessions import LoginLocked
from yugong.security.totp import (
    SECOND_FACTOR_REQUIRED,
    SecondFactorError,
    accepted_step,
    code_at,
    current_step,
    seal_context,
)

from .conftest import PASSWORD, SECRET, World


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=SECRET, totp_issuer="Acme Plant")


def enable(sec: Security, p: Principal) -> str:
    """Set up and enable TOTP for ``p`` with the current code; the seed."""
    secret = sec.totp.setup(p).secret
    sec.totp.enable(p, code_at(secret, current_step()))
    return secret


def next_code(secret: str) -> str:
    # The code of the next step: still inside the drift window, and later than the step
    # used to enable, so it is not a replay.
    return code_at(secret, current_step() + 1)


def test_codes_match_a_standard_implementation() -> None:
    secret = pyotp.random_base32()
    assert code_at(secret, 1_000) == pyotp.TOTP(secret).at(1_000 * 30)
    now = 1_700_000_000.0
    step = int(now // 30)
    assert accepted_step(secret, pyotp.TOTP(secret).at(now), None, now) == step
    assert accepted_step(secret, code_at(secret, step - 1), None, now) == step - 1  # drift
    assert accepted_step(secret, code_at(secret, step - 2), None, now) is None  # too old
    assert accepted_step(secret, code_at(secret, step), step, now) is None  # replay
    assert accepted_step(secret, "12a456", None, now) is None
    assert accepted_step(secret, "1234567", None, now) is None


def test_setup_gives_a_uri_and_stores_the_seed_sealed(world: World) -> None:
    sec, p = world.sec, world.a[Role.ENGINEER]
    setup = sec.totp.setup(p)
    uri = urlparse(setup.uri)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["issuer"] == ["Acme Plant"]
    assert parse_qs(uri.query)["secret"] == [setup.secret] and "a-engineer" in uri.path
    with sec.db.session() as s:
        user = s.get_one(User, p.id)
        stored, enabled = user.totp_secret, user.totp_enabled
    assert stored is not None and setup.secret not in stored
    assert sec.box.open(stored, seal_context(p.id)) == setup.secret
    assert not enabled  # not in force until confirmed
    assert sec.sessions.login("a-engineer", PASSWORD).access_token


def test_enable_needs_a_right_code(world: World) -> None:
    sec, p = world.sec, world.a[Role.ENGINEER]
    with pytest.raises(Conflict, match="setup"):
        sec.totp.enable(p, "123456")
    secret = sec.totp.setup(p).secret
    wrong = code_at(secret, current_step() + 5)
    with pytest.raises(InvalidInput) as e:
        sec.totp.enable(p, wrong)
    assert e.value.errors[0].loc == "code"
    assert not sec.totp.enabled(p)
    sec.totp.enable(p, code_at(secret, current_step()))
    assert sec.totp.enabled(p) and sec.users.me(p).totp_enabled
    with pytest.raises(Conflict):
        sec.totp.setup(p)  # no silent replacement of a seed in force


def test_login_needs_the_code_once_enabled(world: World) -> None:
    sec, p = world.sec, world.a[Role.OPERATOR]
    secret = enable(sec, p)
    with pytest.raises(SecondFactorError) as missing:
        sec.sessions.login("a-operator", PASSWORD)
    assert missing.value.detail == SECOND_FACTOR_REQUIRED
    assert missing.value.extra() == {"second_factor": "totp"}
    with pytest.raises(Unauthorized) as bad_pw:  # the password is checked first
        sec.sessions.login("a-operator", "wrong password", next_code(secret))
    assert not isinstance(bad_pw.value, SecondFactorError)
    code = next_code(secret)
    pair = sec.sessions.login("a-operator", PASSWORD, code)
    assert sec.authenticate(pair.access_token).id == p.id
    with pytest.raises(SecondFactorError, match="already used"):
        sec.sessions.login("a-operator", PASSWORD, code)  # replay in the same window


def test_wrong_codes_count_as_failed_logins(world: World) -> None:
    sec, p = world.sec, world.a[Role.VIEWER]
    secret = enable(sec, p)
    wrong = code_at(secret, current_step() + 7)
    for _ in range(sec.settings.login_lockout_after):
        with pytest.raises(SecondFactorError):
            sec.sessions.login("a-viewer", PASSWORD, wrong)
    with pytest.raises(LoginLocked):
        sec.sessions.login("a-viewer", PASSWORD, next_code(secret))
    with sec.db.session() as s:
        kinds = {e.kind: e for e in s.scalars(select(SecurityEvent))}
    assert kinds["totp_failed"].subject == "a-viewer"
    assert kinds["totp_failed"].count == sec.settings.login_lockout_after
    assert kinds["account_locked"].severity == "critical"
    # a missing code is the first step of a login, not a guess: it does not count
    sec.users.unlock(world.a[Role.TENANT_ADMIN], p.id)
    for _ in range(sec.settings.login_lockout_after + 1):
        with pytest.raises(SecondFactorError):
            sec.sessions.login("a-viewer", PASSWORD)
    assert sec.sessions.login("a-viewer", PASSWORD, next_code(secret)).access_token


def test_disable_needs_password_and_code(world: World) -> None:
    sec, p = world.sec, world.a[Role.ENGINEER]
    with pytest.raises(Conflict):
        sec.totp.disable(p, PASSWORD, "123456")
    secret = enable(sec, p)
    with pytest.raises(InvalidInput) as e:
        sec.totp.disable(p, "wrong password", next_code(secret))
    assert e.value.errors[0].loc == "password"
    with pytest.raises(InvalidInput) as e:
        sec.totp.disable(p, PASSWORD, code_at(secret, current_step() + 9))
    assert e.value.errors[0].loc == "code"
    assert sec.totp.enabled(p)
    sec.totp.disable(p, PASSWORD, next_code(secret))
    assert not sec.totp.enabled(p)
    with sec.db.session() as s:
        assert s.get_one(User, p.id).totp_secret is None
    assert sec.sessions.login("a-engineer", PASSWORD).access_token


def test_admin_reset(world: World) -> None:
    sec, p = world.sec, world.a[Role.ENGINEER]
    enable(sec, p)
    with pytest.raises(Forbidden):
        sec.totp.reset(world.a[Role.ENGINEER], p.id)
    with pytest.raises(NotFound):
        sec.totp.reset(world.b[Role.TENANT_ADMIN], p.id)
    with pytest.raises(NotFound):  # platform admins are outside any tenant
        sec.totp.reset(world.a[Role.TENANT_ADMIN], world.platform.id)
    assert sec.totp.enabled(p)
    sec.totp.reset(world.a[Role.TENANT_ADMIN], p.id)
    assert not sec.totp.enabled(p)
    assert sec.sessions.login("a-engineer", PASSWORD).access_token
    enable(sec, p)  # and a new one can be set up
    sec.totp.reset(world.platform, p.id)  # the platform admin may too
    assert not sec.totp.enabled(p)


def test_a_seed_copied_to_another_user_does_not_open(world: World) -> None:
    sec = world.sec
    victim, other = world.a[Role.ENGINEER], world.a[Role.OPERATOR]
    enable(sec, victim)
    with sec.db.session() as s:
        sealed = s.get_one(User, victim.id).totp_secret
        row = s.get_one(User, other.id)
        row.totp_secret, row.totp_enabled = sealed, True
    with pytest.raises(Unauthorized, match="administrator"):
        sec.sessions.login("a-operator", PASSWORD, "123456")


def test_only_users_have_a_second_factor(world: World) -> None:
    key = world.sec.apikeys.create(world.a[Role.TENANT_ADMIN], name="k")
    principal = world.sec.authenticate(key.key)
    with pytest.raises(Forbidden):
        world.sec.totp.setup(principal)
    assert not world.sec.totp.enabled(principal)
