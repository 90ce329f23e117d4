"""Who is using the app: a visitor or the team, and the team's sign-in box in the sidebar.

Modes, first that applies: ``oidc`` (an ``[auth]`` section in secrets: ``st.login``, team = e-mails on
``team_emails``), ``password`` (``team_password_hash`` in secrets or ``$SINGTALK_TEAM_PASSWORD_HASH``),
``open`` (nothing configured and the server bound to a loopback address: everyone is the team, as on a
laptop), ``visitor`` (nothing configured on any other address: nobody is). ``$SINGTALK_PUBLIC=1`` counts a
loopback bind as public (an app behind a proxy on the same machine).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping

import streamlit as st

from singtalk.access import BadPasswordHash, Throttle, email_allowed, is_loopback, password_hash_from_env, \
    verify_password

TEAM_KEY = "access-team"          # session flag set by a right password
MESSAGE_KEY = "access-message"    # the sign-in box's last refusal
PASSWORD_KEY = "access-password"  # the password field
THROTTLE = Throttle()             # shared by every session of this server


def _secret(key: str):
    try:
        return st.secrets.get(key) if st.secrets.load_if_toml_exists() else None
    except Exception:  # noqa: BLE001 - a malformed secrets.toml: treat as absent, Streamlit reports it itself
        return None


def password_hash() -> str | None:
    """The team password hash: ``team_password_hash`` in secrets, else the environment."""
    return (str(_secret("team_password_hash") or "").strip() or None) or password_hash_from_env()


def mode() -> str:
    """``oidc``, ``password``, ``open`` or ``visitor`` (see the module docstring)."""
    if isinstance(_secret("auth"), Mapping):
        return "oidc"
    if password_hash():
        return "password"
    public = os.environ.get("SINGTALK_PUBLIC", "").strip().lower() in ("1", "true", "yes")
    return "open" if is_loopback(bind_address()) and not public else "visitor"


def bind_address() -> str | None:
    """``server.address`` (``streamlit run`` also maps ``$STREAMLIT_SERVER_ADDRESS`` to it; AppTest does not)."""
    return st.get_option("server.address") or os.environ.get("STREAMLIT_SERVER_ADDRESS") or None


def _oidc_team() -> bool:
    user = st.user
    if not user.get("is_logged_in"):
        return False
    return email_allowed(user.get("email"), list(_secret("team_emails") or []), verified=user.get("email_verified"))


def is_team() -> bool:
    """Whether this session may train, review, promote, roll back and build tables."""
    current = mode()
    if current == "open":
        return True
    if current == "oidc":
        return _oidc_team()
    return current == "password" and st.session_state.get(TEAM_KEY) is True


def require_team() -> None:
    """Stop a page a visitor may not use (navigation does not list it for them; this is the second lock)."""
    if not is_team():
        st.warning("This page is for the team. Sign in from the sidebar.")
        st.stop()


def client_address() -> str:
    """The visitor's address: Tornado's peer, or the last X-Forwarded-For hop when the peer is a local proxy."""
    peer = st.context.ip_address
    if peer is None or is_loopback(peer):
        forwarded = (st.context.headers.get("X-Forwarded-For") or "").split(",")[-1].strip()
        return forwarded or peer or "local"
    return peer


def _throttle_keys() -> tuple[str, str]:
    session = st.session_state.setdefault("access-session", secrets.token_hex(8))
    return f"session:{session}", f"address:{client_address()}"


def _check_password() -> None:
    """The sign-in form's callback: throttled, constant-time check of the typed password."""
    typed = st.session_state.get(PASSWORD_KEY, "")
    st.session_state[PASSWORD_KEY] = ""
    keys = _throttle_keys()
    wait = THROTTLE.wait_s(*keys)
    if wait > 0:
        st.session_state[MESSAGE_KEY] = f"Too many wrong passwords. Try again in {math.ceil(wait)} s."
        return
    try:
        right = verify_password(typed, password_hash() or "")
    except BadPasswordHash:
        st.session_state[MESSAGE_KEY] = "Team sign-in is misconfigured on this server; ask whoever hosts it."
        return
    if right:
        THROTTLE.succeeded(*keys)
        st.session_state[TEAM_KEY] = True
        st.session_state.pop(MESSAGE_KEY, None)
    else:
        THROTTLE.failed(*keys)
        st.session_state[MESSAGE_KEY] = "Wrong password."


def _sign_out() -> None:
    st.session_state.pop(TEAM_KEY, None)


def _oidc_provider() -> str | None:
    """``None`` for a single ``[auth]`` provider, else the first ``[auth.<name>]`` section's name."""
    auth = _secret("auth") or {}
    if "client_id" in auth:
        return None
    return next((name for name, value in auth.items() if isinstance(value, Mapping)), None)


def sign_in_box() -> None:
    """The sidebar's team sign-in (or sign-out), or the note that this server is visitor-only."""
    current = mode()
    with st.sidebar:
        if current == "visitor":
            st.info("Visitor mode: classify and look at the dataset. Training and review are off because no "
                    "team sign-in is configured on this server.")
        elif current == "password":
            _password_box()
        elif current == "oidc":
            _oidc_box()


def _password_box() -> None:
    if is_team():
        st.success("Signed in: team.")
        st.button("Sign out", key="access-sign-out", on_click=_sign_out)
        return
    with st.expander("Team sign-in"):
        with st.form("access-form", border=False):
            st.text_input("Team password", type="password", key=PASSWORD_KEY)
            st.form_submit_button("Sign in", on_click=_check_password)
        if st.session_state.get(MESSAGE_KEY):
            st.error(st.session_state.pop(MESSAGE_KEY))  # once, on the run after the attempt


def _oidc_box() -> None:
    if not st.user.get("is_logged_in"):
        st.button("Team sign-in", key="access-login", on_click=st.login, args=(_oidc_provider(),))
        return
    name = st.user.get("email") or st.user.get("name") or "you"
    if is_team():
        st.success(f"Signed in: {name} (team).")
    else:
        st.warning(f"Signed in as {name}, who is not on this server's team list.")
    st.button("Sign out", key="access-logout", on_click=st.logout)
