"""Who may steer the farm through its web UI and REST API (master side).

Anyone who reaches the UI may look. Forcing, rebuilding, stopping builds and pausing workers
(every control endpoint) is for release engineers: role `releng`; an `admin` is one too. Users
and their salted password hashes live in <state>/secrets/www-users.json, managed with
`wheelwright user add`; `wheelwright` itself logs in as the account `up` makes for it.
"""

from __future__ import annotations

from pathlib import Path

from buildbot.plugins import util
from buildbot.www import auth
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads

from wheelwright.indexhost import accounts


class FarmUsers(auth.CustomAuth):
    """Buildbot's HTTP basic login, against the farm's users file (checked off the reactor)."""

    def __init__(self, users: Path):
        super().__init__(userInfoProvider=FarmUserInfo(users))
        self.users = users

    def requestAvatarId(self, cred):
        user, password = cred.username.decode(), cred.password.decode()
        d = threads.deferToThread(accounts.check, self.users, user, password)
        d.addCallback(lambda ok: cred.username if ok else defer.fail(UnauthorizedLogin()))
        return d

    def check_credentials(self, username: bytes, password: bytes) -> bool:
        return accounts.check(self.users, username.decode(), password.decode())


class FarmUserInfo(auth.UserInfoProviderBase):
    def __init__(self, users: Path):
        self.users = users

    def getUserInfo(self, username):
        return defer.succeed(
            {
                "email": username,
                "full_name": username,
                "groups": accounts.roles(self.users, username),
            }
        )


def www_auth(users: Path) -> dict:
    """The `auth` and `authz` entries of the master's `www` configuration."""
    return {
        "auth": FarmUsers(users),
        "authz": util.Authz(
            allowRules=[util.AnyControlEndpointMatcher(role="releng")],
            roleMatchers=[util.RolesFromGroups()],
        ),
    }
