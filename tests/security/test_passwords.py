from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from yugong.core.errors import InvalidInput
from yugong.security.passwords import PasswordPolicy, Passwords, generate_password

CHEAP = PasswordHasher.from_parameters(CHEAPEST)


def test_hash_and_verify() -> None:
    pw = Passwords(CHEAP)
    h = pw.hash("a long passphrase")
    assert h.startswith("$argon2id$")
    assert "a long passphrase" not in h
    assert pw.verify(h, "a long passphrase")
    assert not pw.verify(h, "a long passphrasE")
    assert not pw.verify("not-a-hash", "a long passphrase")


def test_missing_user_never_verifies() -> None:
    pw = Passwords(CHEAP)
    assert not pw.verify(None, "anything at all")
    assert not pw.verify(None, "")


def test_rehash_when_parameters_change() -> None:
    old = Passwords(CHEAP)
    new = Passwords(PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1))
    h = old.hash("a long passphrase")
    assert new.verify(h, "a long passphrase")  # old hashes still verify...
    assert new.needs_rehash(h)  # ...but are flagged for upgrade
    assert not new.needs_rehash(new.hash("a long passphrase"))
    assert new.needs_rehash("garbage")


def test_policy_names_each_rule() -> None:
    policy = PasswordPolicy()
    with pytest.raises(InvalidInput) as e:
        policy.check("short", "alice")
    assert "at least 10 characters" in e.value.detail
    assert e.value.errors[0].loc == "password"

    with pytest.raises(InvalidInput) as e:
        policy.check("xxAlice-2024xx", "alice")
    assert "must not contain the username" in e.value.detail

    with pytest.raises(InvalidInput) as e:
        policy.check(" " * 12)
    assert "blank" in e.value.detail

    policy.check("a perfectly fine passphrase", "alice")


def test_policy_is_configurable() -> None:
    strict = PasswordPolicy(min_length=14, min_classes=3)
    problems = strict.problems("alllowercase1", None)
    assert any("at least 14" in p for p in problems)
    assert any("at least 3 of" in p for p in problems)
    assert strict.problems("Mixed-Case-Pass-99") == []
    loose = PasswordPolicy(min_length=4, forbid_username=False)
    assert loose.problems("bob-bob", "bob") == []
    with pytest.raises(InvalidInput) as e:
        PasswordPolicy().check("x" * 300, loc="new_password")
    assert e.value.errors[0].loc == "new_password"
    assert "at most 256" in e.value.detail


def test_generated_passwords_pass_the_policy() -> None:
    seen = {generate_password() for _ in range(20)}
    assert len(seen) == 20
    for p in seen:
        assert len(p) == 20
        assert PasswordPolicy(min_classes=3).problems(p, "admin") == []
