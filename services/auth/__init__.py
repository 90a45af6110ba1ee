"""Identity: users, organizations, memberships, sessions, API tokens, signing keys."""
