"""Identity's business rules: given these events, when this command, then these events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from libs.errors import (
    AuthenticationRequired,
    AuthorizationDenied,
    Conflict,
    NotFound,
    ValidationFailed,
)
from libs.events import Event
from libs.principal import Principal
from services.auth import decider as d
from services.auth.events import (
    AdminBootstrapped,
    EmailClaimed,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OrganizationCreated,
    SessionRefreshed,
    SessionRevoked,
    SessionStarted,
    SigningKeyAdded,
    SigningKeyRetired,
    TokenIssued,
    TokenRevoked,
    UserRegistered,
)

S = TypeVar("S")

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def given(evolve: Callable[[S, Event], S], initial: S, *events: Event) -> S:
    return d.fold(evolve, initial, events)


# --- users and email addresses ------------------------------------------------------------


def test_the_first_claim_on_an_address_succeeds() -> None:
    state = given(d.evolve_email, d.EmailState())

    events = d.decide_claim_email(state, email="ada@example.com", user_id="usr_a")

    assert events == [EmailClaimed(email="ada@example.com", user_id="usr_a")]


def test_a_second_claim_on_the_same_address_is_a_conflict_on_email() -> None:
    state = given(
        d.evolve_email, d.EmailState(), EmailClaimed(email="ada@example.com", user_id="usr_a")
    )

    with pytest.raises(Conflict) as caught:
        d.decide_claim_email(state, email="ada@example.com", user_id="usr_b")

    assert caught.value.status == 409
    assert caught.value.details.get("field") == "$.email"


def test_a_claimed_address_is_stored_normalised() -> None:
    events = d.decide_claim_email(d.EmailState(), email="  Ada@Example.COM ", user_id="usr_a")

    assert events == [EmailClaimed(email="ada@example.com", user_id="usr_a")]


def test_normalising_folds_case_and_surrounding_space_to_one_address() -> None:
    assert d.normalize_email(" ADA@example.com\t") == d.normalize_email("ada@EXAMPLE.com")


def test_registering_a_user_records_a_normalised_email() -> None:
    events = d.decide_register_user(
        d.UserState(), user_id="usr_a", email=" Ada@Example.com", name="Ada", password_hash="h"
    )

    assert events == [
        UserRegistered(user_id="usr_a", email="ada@example.com", name="Ada", password_hash="h")
    ]


def test_registering_the_same_user_twice_is_a_conflict() -> None:
    state = given(
        d.evolve_user,
        d.UserState(),
        UserRegistered(user_id="usr_a", email="ada@example.com", name="Ada", password_hash="h"),
    )

    with pytest.raises(Conflict) as caught:
        d.decide_register_user(
            state, user_id="usr_a", email="ada@example.com", name="Ada", password_hash="h2"
        )

    assert caught.value.details.get("field") == "$.email"


# --- organizations ------------------------------------------------------------------------

CREATED = OrganizationCreated(organization_id="org_1", name="Acme", slug="acme", created_by="usr_o")


def org(*members: tuple[str, str]) -> d.OrganizationState:
    return given(
        d.evolve_organization,
        d.OrganizationState(),
        CREATED,
        *(MemberAdded(user_id=user_id, role=role) for user_id, role in members),
    )


def member(user_id: str, role: str, **kwargs: Any) -> Principal:
    return Principal(user_id=user_id, memberships={"org_1": role}, **kwargs)


OWNER = member("usr_o", "owner")
ADMIN = member("usr_ad", "admin")
ACME = (("usr_o", "owner"), ("usr_ad", "admin"), ("usr_dp", "deployer"), ("usr_v", "viewer"))


def test_creating_an_organization_makes_its_creator_the_owner() -> None:
    events = d.decide_create_organization(
        d.OrganizationState(), organization_id="org_1", name="Acme", slug="acme", owner_id="usr_o"
    )

    assert events == [CREATED, MemberAdded(user_id="usr_o", role="owner")]
    assert given(d.evolve_organization, d.OrganizationState(), *events).members == {
        "usr_o": "owner"
    }


def test_creating_an_existing_organization_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        d.decide_create_organization(
            org(), organization_id="org_1", name="Acme", slug="acme", owner_id="usr_x"
        )


def test_an_admin_can_add_a_member() -> None:
    events = d.decide_add_member(org(*ACME), ADMIN, user_id="usr_new", role="deployer")

    assert events == [MemberAdded(user_id="usr_new", role="deployer")]


@pytest.mark.parametrize(("user_id", "role"), [("usr_dp", "deployer"), ("usr_v", "viewer")])
def test_members_below_admin_cannot_add_members(user_id: str, role: str) -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_add_member(org(*ACME), member(user_id, role), user_id="usr_new", role="viewer")


def test_a_non_member_is_told_the_organization_does_not_exist() -> None:
    stranger = Principal(user_id="usr_x", memberships={"org_2": "owner"})

    with pytest.raises(NotFound):
        d.decide_add_member(org(*ACME), stranger, user_id="usr_new", role="viewer")


def test_managing_members_of_a_missing_organization_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_add_member(d.OrganizationState(), OWNER, user_id="usr_new", role="viewer")


def test_an_admin_cannot_add_an_owner() -> None:
    with pytest.raises(AuthorizationDenied) as caught:
        d.decide_add_member(org(*ACME), ADMIN, user_id="usr_new", role="owner")

    assert caught.value.details.get("field") == "$.role"


def test_an_owner_can_add_an_owner() -> None:
    events = d.decide_add_member(org(*ACME), OWNER, user_id="usr_new", role="owner")

    assert events == [MemberAdded(user_id="usr_new", role="owner")]


def test_adding_an_existing_member_is_a_conflict_on_user_id() -> None:
    with pytest.raises(Conflict) as caught:
        d.decide_add_member(org(*ACME), ADMIN, user_id="usr_v", role="deployer")

    assert caught.value.details.get("field") == "$.user_id"


def test_a_removed_member_can_be_added_again() -> None:
    state = given(d.evolve_organization, org(*ACME), MemberRemoved(user_id="usr_v"))

    events = d.decide_add_member(state, ADMIN, user_id="usr_v", role="viewer")

    assert events == [MemberAdded(user_id="usr_v", role="viewer")]


def test_the_last_owner_cannot_change_their_own_role() -> None:
    with pytest.raises(Conflict) as caught:
        d.decide_change_role(org(*ACME), OWNER, user_id="usr_o", role="admin")

    assert caught.value.details.get("field") == "$.role"


def test_the_last_owner_cannot_be_removed() -> None:
    with pytest.raises(Conflict):
        d.decide_remove_member(org(*ACME), OWNER, user_id="usr_o")


def test_an_owner_can_demote_another_owner_when_two_exist() -> None:
    state = org(*ACME, ("usr_o2", "owner"))

    events = d.decide_change_role(state, OWNER, user_id="usr_o2", role="admin")

    assert events == [MemberRoleChanged(user_id="usr_o2", role="admin")]
    assert given(d.evolve_organization, state, *events).members["usr_o2"] == "admin"


def test_an_owner_can_remove_another_owner_when_two_exist() -> None:
    state = org(*ACME, ("usr_o2", "owner"))

    events = d.decide_remove_member(state, OWNER, user_id="usr_o2")

    assert events == [MemberRemoved(user_id="usr_o2")]
    assert "usr_o2" not in given(d.evolve_organization, state, *events).members


def test_an_admin_cannot_take_ownership_away() -> None:
    state = org(*ACME, ("usr_o2", "owner"))

    with pytest.raises(AuthorizationDenied):
        d.decide_change_role(state, ADMIN, user_id="usr_o2", role="admin")
    with pytest.raises(AuthorizationDenied):
        d.decide_remove_member(state, ADMIN, user_id="usr_o2")


def test_an_admin_cannot_promote_to_owner() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_change_role(org(*ACME), ADMIN, user_id="usr_v", role="owner")


def test_an_admin_can_change_a_deployers_role() -> None:
    events = d.decide_change_role(org(*ACME), ADMIN, user_id="usr_dp", role="viewer")

    assert events == [MemberRoleChanged(user_id="usr_dp", role="viewer")]


def test_changing_a_role_to_the_same_role_records_nothing() -> None:
    assert d.decide_change_role(org(*ACME), ADMIN, user_id="usr_dp", role="deployer") == []


def test_changing_or_removing_someone_who_is_not_a_member_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_change_role(org(*ACME), ADMIN, user_id="usr_x", role="viewer")
    with pytest.raises(NotFound):
        d.decide_remove_member(org(*ACME), ADMIN, user_id="usr_x")


def test_a_token_without_the_admin_scope_cannot_manage_members_even_for_an_admin() -> None:
    token = member("usr_ad", "admin", kind="personal", scopes=("read", "write", "deploy"))

    with pytest.raises(AuthorizationDenied):
        d.decide_add_member(org(*ACME), token, user_id="usr_new", role="viewer")
    with pytest.raises(AuthorizationDenied):
        d.decide_remove_member(org(*ACME), token, user_id="usr_v")


def test_a_superuser_can_manage_any_organization() -> None:
    root = Principal(user_id="usr_root", is_superuser=True)

    assert d.decide_add_member(org(*ACME), root, user_id="usr_new", role="owner") == [
        MemberAdded(user_id="usr_new", role="owner")
    ]
    assert d.decide_remove_member(org(*ACME, ("usr_o2", "owner")), root, user_id="usr_o") == [
        MemberRemoved(user_id="usr_o")
    ]


# --- sessions -----------------------------------------------------------------------------

STARTED = SessionStarted(
    session_id="ses_1",
    user_id="usr_a",
    organization_id="org_1",
    refresh_hash="h0",
    expires_at=NOW + DAY,
)


def session(*events: Event) -> d.SessionState:
    return given(d.evolve_session, d.SessionState(), STARTED, *events)


def refresh(state: d.SessionState, presented: str, *, now: datetime = NOW) -> list[Event]:
    return d.decide_refresh(state, presented_hash=presented, new_hash="hN", now=now, ttl=DAY)


def test_starting_a_session_sets_its_expiry_from_now_and_ttl() -> None:
    events = d.decide_start_session(
        d.SessionState(),
        session_id="ses_1",
        user_id="usr_a",
        organization_id="org_1",
        refresh_hash="h0",
        now=NOW,
        ttl=DAY,
    )

    assert events == [STARTED]


def test_refreshing_with_the_current_token_rotates_it() -> None:
    later = NOW + HOUR

    events = refresh(session(), "h0", now=later)

    assert events == [SessionRefreshed(refresh_hash="hN", generation=1, expires_at=later + DAY)]


def test_each_refresh_increments_the_generation() -> None:
    state = session(SessionRefreshed(refresh_hash="h1", generation=1, expires_at=NOW + DAY))

    events = refresh(state, "h1")

    assert events == [SessionRefreshed(refresh_hash="hN", generation=2, expires_at=NOW + DAY)]


def test_reusing_a_rotated_refresh_token_revokes_the_session() -> None:
    state = session(SessionRefreshed(refresh_hash="h1", generation=1, expires_at=NOW + DAY))

    assert refresh(state, "h0") == [SessionRevoked(reason="refresh_token_reused")]


@pytest.mark.parametrize("presented", ["h0", "h1"])
def test_after_revocation_no_refresh_token_works(presented: str) -> None:
    state = session(
        SessionRefreshed(refresh_hash="h1", generation=1, expires_at=NOW + DAY),
        SessionRevoked(reason="refresh_token_reused"),
    )

    with pytest.raises(AuthenticationRequired) as caught:
        refresh(state, presented)

    assert caught.value.details.get("field") == "$.refresh_token"


def test_an_unknown_refresh_token_is_refused_without_revoking() -> None:
    with pytest.raises(AuthenticationRequired):
        refresh(session(), "h_unknown")


def test_refreshing_an_unknown_session_is_refused() -> None:
    with pytest.raises(AuthenticationRequired):
        refresh(d.SessionState(), "h0")


def test_an_expired_session_cannot_be_refreshed() -> None:
    with pytest.raises(AuthenticationRequired):
        refresh(session(), "h0", now=NOW + DAY)


def test_a_session_can_be_refreshed_just_before_it_expires() -> None:
    just_before = NOW + DAY - timedelta(seconds=1)

    events = refresh(session(), "h0", now=just_before)

    assert events == [
        SessionRefreshed(refresh_hash="hN", generation=1, expires_at=just_before + DAY)
    ]


def test_a_user_can_end_their_own_session() -> None:
    actor = Principal(user_id="usr_a")

    assert d.decide_end_session(session(), actor, reason="logout") == [
        SessionRevoked(reason="logout")
    ]


def test_another_user_is_told_the_session_does_not_exist() -> None:
    with pytest.raises(NotFound):
        d.decide_end_session(session(), Principal(user_id="usr_b"), reason="logout")


def test_ending_an_already_revoked_session_records_nothing() -> None:
    state = session(SessionRevoked(reason="logout"))

    assert d.decide_end_session(state, Principal(user_id="usr_a"), reason="logout") == []


def test_the_system_and_superusers_can_end_anyones_session() -> None:
    root = Principal(user_id="usr_root", is_superuser=True)

    assert d.decide_end_session(session(), None, reason="deactivated") == [
        SessionRevoked(reason="deactivated")
    ]
    assert d.decide_end_session(session(), root, reason="admin") == [SessionRevoked(reason="admin")]


# --- API tokens ---------------------------------------------------------------------------


def issue(actor: Principal, **overrides: Any) -> list[Event]:
    args: dict[str, Any] = {
        "token_id": "tok_1",
        "kind": "personal",
        "name": "ci",
        "scopes": ("read",),
        "organization_id": "org_1",
        "expires_in_days": None,
        "secret_hash": "sh",
        "prefix": "dfp_abc",
        "now": NOW,
    }
    args.update(overrides)
    return d.decide_issue_token(d.TokenState(), actor, **args)


def issued(actor: Principal, **overrides: Any) -> TokenIssued:
    fields: dict[str, Any] = {
        "token_id": "tok_1",
        "kind": "personal",
        "name": "ci",
        "user_id": actor.user_id,
        "organization_id": "org_1",
        "scopes": ("read",),
        "secret_hash": "sh",
        "prefix": "dfp_abc",
        "expires_at": None,
    }
    fields.update(overrides)
    return TokenIssued(**fields)


def test_a_deployer_can_issue_a_personal_token_within_their_role() -> None:
    deployer = member("usr_dp", "deployer")

    events = issue(deployer, scopes=("write", "read", "deploy", "read"))

    assert events == [issued(deployer, scopes=("deploy", "read", "write"))]


def test_a_viewer_cannot_issue_a_token_with_write() -> None:
    with pytest.raises(AuthorizationDenied) as caught:
        issue(member("usr_v", "viewer"), scopes=("read", "write"))

    assert caught.value.details.get("field") == "$.scopes"
    assert "write" in caught.value.message


def test_a_token_cannot_grant_scopes_its_own_credential_lacks() -> None:
    read_only = member("usr_ad", "admin", kind="personal", scopes=("read",))

    with pytest.raises(AuthorizationDenied) as caught:
        issue(read_only, scopes=("read", "deploy"))

    assert caught.value.details.get("field") == "$.scopes"


def test_the_principals_own_organization_is_used_when_none_is_named() -> None:
    actor = Principal(user_id="usr_a", organization_id="org_1", memberships={"org_1": "viewer"})

    assert issue(actor, organization_id=None) == [issued(actor)]


def test_a_token_needs_an_organization() -> None:
    with pytest.raises(ValidationFailed) as caught:
        issue(Principal(user_id="usr_a"), organization_id=None)

    assert caught.value.details.get("field") == "$.organization_id"


def test_a_token_for_an_organization_the_user_is_not_in_is_not_found() -> None:
    with pytest.raises(NotFound):
        issue(member("usr_a", "owner"), organization_id="org_2")


def test_a_token_expires_the_given_number_of_days_from_now() -> None:
    events = issue(member("usr_a", "viewer"), expires_in_days=30)

    assert events == [issued(member("usr_a", "viewer"), expires_at=NOW + timedelta(days=30))]


def test_a_service_token_names_its_service() -> None:
    with pytest.raises(ValidationFailed) as caught:
        issue(ADMIN, kind="service", expires_in_days=30)

    assert caught.value.details.get("field") == "$.service_id"


@pytest.mark.parametrize("days", [1, 180])
def test_a_service_token_lives_one_to_180_days(days: int) -> None:
    events = issue(ADMIN, kind="service", service_id="svc_1", expires_in_days=days)

    assert events == [
        issued(ADMIN, kind="service", service_id="svc_1", expires_at=NOW + timedelta(days=days))
    ]


@pytest.mark.parametrize("days", [None, 0, 181])
def test_a_service_token_outside_one_to_180_days_is_refused(days: int | None) -> None:
    with pytest.raises(ValidationFailed) as caught:
        issue(ADMIN, kind="service", service_id="svc_1", expires_in_days=days)

    assert caught.value.details.get("field") == "$.expires_in_days"


def test_a_deployment_token_names_its_deployment() -> None:
    with pytest.raises(ValidationFailed) as caught:
        issue(ADMIN, kind="deployment")

    assert caught.value.details.get("field") == "$.deployment_id"


def test_a_deployment_token_records_its_deployment() -> None:
    events = issue(ADMIN, kind="deployment", deployment_id="dep_1", scopes=("deploy",))

    assert events == [issued(ADMIN, kind="deployment", deployment_id="dep_1", scopes=("deploy",))]


@pytest.mark.parametrize(
    "restricted",
    [
        member("usr_ad", "admin", kind="deployment", scopes=("write",), deployment_id="dep_1"),
        member("usr_ad", "admin", kind="service", scopes=("write",), service_id="svc_1"),
    ],
    ids=["deployment", "service"],
)
def test_a_resource_bound_token_cannot_mint_an_unbound_token(restricted: Principal) -> None:
    with pytest.raises(AuthorizationDenied):
        issue(restricted, scopes=("write",))


TOKEN = TokenIssued(
    token_id="tok_1",
    kind="personal",
    name="ci",
    user_id="usr_dp",
    organization_id="org_1",
    scopes=("read",),
    secret_hash="sh",
    prefix="dfp_abc",
    expires_at=None,
)


def token(*events: Event) -> d.TokenState:
    return given(d.evolve_token, d.TokenState(), TOKEN, *events)


def test_the_tokens_owner_can_revoke_it() -> None:
    assert d.decide_revoke_token(token(), member("usr_dp", "deployer")) == [
        TokenRevoked(reason="revoked")
    ]


def test_an_organization_admin_can_revoke_a_members_token() -> None:
    assert d.decide_revoke_token(token(), ADMIN) == [TokenRevoked(reason="revoked")]


@pytest.mark.parametrize(
    "stranger",
    [
        Principal(user_id="usr_x"),
        member("usr_v", "viewer"),
        Principal(user_id="usr_x", memberships={"org_2": "owner"}),
    ],
    ids=["no-org", "viewer-in-org", "owner-elsewhere"],
)
def test_anyone_else_is_told_the_token_does_not_exist(stranger: Principal) -> None:
    with pytest.raises(NotFound):
        d.decide_revoke_token(token(), stranger)


def test_revoking_an_unknown_token_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_revoke_token(d.TokenState(), ADMIN)


def test_revoking_twice_records_nothing() -> None:
    state = token(TokenRevoked(reason="revoked"))

    assert d.decide_revoke_token(state, member("usr_dp", "deployer")) == []


def test_an_admins_token_without_the_admin_scope_cannot_revoke_others_tokens() -> None:
    limited = member("usr_ad", "admin", kind="personal", scopes=("read", "write"))

    with pytest.raises(NotFound):
        d.decide_revoke_token(token(), limited)


# --- signing keyring ----------------------------------------------------------------------

MAX_AGE = timedelta(days=30)
GRACE = timedelta(minutes=15)


def key_added(kid: str, at: datetime) -> SigningKeyAdded:
    return SigningKeyAdded(kid=kid, public_key=f"pub-{kid}", private_key_sealed="x", added_at=at)


def keyring(*events: Event) -> d.KeyringState:
    return given(d.evolve_keyring, d.KeyringState(), *events)


def rotate(state: d.KeyringState, now: datetime) -> list[Event]:
    return d.decide_rotate(
        state, now=now, max_age=MAX_AGE, grace=GRACE, new_key=key_added("k_new", now)
    )


def test_an_empty_keyring_gets_the_given_key() -> None:
    assert rotate(keyring(), NOW) == [key_added("k_new", NOW)]


def test_a_fresh_active_key_needs_nothing() -> None:
    assert rotate(keyring(key_added("k1", NOW)), NOW + HOUR) == []


def test_an_active_key_older_than_max_age_gets_a_successor() -> None:
    later = NOW + MAX_AGE

    assert rotate(keyring(key_added("k1", NOW)), later) == [key_added("k_new", later)]


def test_a_superseded_key_stays_published_during_the_grace_period() -> None:
    successor_at = NOW + MAX_AGE
    state = keyring(key_added("k1", NOW), key_added("k2", successor_at))

    assert rotate(state, successor_at + GRACE - timedelta(seconds=1)) == []


def test_superseded_keys_are_retired_once_the_newest_is_older_than_grace() -> None:
    successor_at = NOW + MAX_AGE
    state = keyring(
        key_added("k0", NOW - DAY),
        key_added("k1", NOW),
        key_added("k2", successor_at),
        SigningKeyRetired(kid="k0"),
    )

    events = rotate(state, successor_at + GRACE)

    assert events == [SigningKeyRetired(kid="k1")]
    after = given(d.evolve_keyring, state, *events)
    assert [k.kid for k in after.keys if not k.retired] == ["k2"]
    assert rotate(after, successor_at + GRACE) == []


def test_the_active_key_is_the_newest_unretired_one() -> None:
    assert keyring().active is None
    state = keyring(key_added("k1", NOW), key_added("k2", NOW + HOUR))
    assert state.active == d.SigningKey(
        kid="k2", public_key="pub-k2", private_key_sealed="x", added_at=NOW + HOUR
    )
    state = given(d.evolve_keyring, state, SigningKeyRetired(kid="k2"))
    active = state.active
    assert active is not None
    assert active.kid == "k1"


# --- bootstrap ----------------------------------------------------------------------------


def test_the_first_bootstrap_creates_the_administrator() -> None:
    events = d.decide_bootstrap(d.BootstrapState(), user_id="usr_a", organization_id="org_1")

    assert events == [AdminBootstrapped(user_id="usr_a", organization_id="org_1")]


def test_a_second_bootstrap_does_nothing() -> None:
    state = given(
        d.evolve_bootstrap,
        d.BootstrapState(),
        AdminBootstrapped(user_id="usr_a", organization_id="org_1"),
    )

    assert d.decide_bootstrap(state, user_id="usr_b", organization_id="org_2") == []
