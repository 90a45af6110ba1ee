"""One function per identity command: load the aggregates, decide, append.

Every function takes `AuthDeps` (built by main.py) and returns a `Reply`
whose position is the last event appended, for read-your-writes. Grouped by
what they change: sessions (and signing keys), members (users and
organizations), tokens, installation.
"""

from services.auth.handlers.aggregates import (
    BOOTSTRAP,
    EMAILS,
    KEYRING,
    KEYRING_ID,
    ORGS,
    SESSIONS,
    SLUGS,
    TOKENS,
    USERS,
    AuthDeps,
    email_key,
)
from services.auth.handlers.installation import bootstrap_admin
from services.auth.handlers.members import (
    add_member,
    change_member_role,
    create_organization,
    create_user,
    remove_member,
)
from services.auth.handlers.sessions import ensure_signing_key, login, logout, refresh
from services.auth.handlers.tokens import issue_deployment_token, issue_token, revoke_token

__all__ = [
    "BOOTSTRAP",
    "EMAILS",
    "KEYRING",
    "KEYRING_ID",
    "ORGS",
    "SESSIONS",
    "SLUGS",
    "TOKENS",
    "USERS",
    "AuthDeps",
    "add_member",
    "bootstrap_admin",
    "change_member_role",
    "create_organization",
    "create_user",
    "email_key",
    "ensure_signing_key",
    "issue_deployment_token",
    "issue_token",
    "login",
    "logout",
    "refresh",
    "remove_member",
    "revoke_token",
]
