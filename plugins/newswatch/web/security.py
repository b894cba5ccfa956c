"""Who is asking, whether they may change newswatch's configuration, and CSRF protection of the forms that do.

**Login.** Airflow does not protect plugin routes by itself: every page and JSON route depends on
:func:`authenticated`, which resolves the Airflow user from the ``_token`` cookie or a bearer header
(401 without one) and keeps it on the request for the templates.

**Who may edit.** :func:`may_edit` asks Airflow's auth manager whether the user may edit *Variables*. Airflow
has no resource for a plugin's settings that every auth manager answers by method: SimpleAuthManager grants
``is_authorized_custom_view`` to any viewer whatever the method, and FAB gives no role ``can_edit`` on
Configurations (Airflow's own configuration is read-only). Variables are the nearest thing both answer the same
way, runtime settings the DAGs read, editable by the Op and Admin roles and read-only to Viewer and User; other
auth managers (Keycloak, AWS) map them to their own policies. Read-only users get pages without edit controls
(``can_edit`` is false in every template) and a 403 for any change.

**CSRF.** The pages live in an iframe of the Airflow UI and authenticate with its cookie, so a form that
changes something must prove it came from these pages. Each form carries a token signed (HMAC-SHA256) with a
key derived from Airflow's ``[api] secret_key`` (the same on every API server), bound to the user and an
expiry, salted so it differs on every page (compressed answers cannot leak it byte by byte). A request that
changes something must present it in the ``csrf_token`` form field or the ``X-CSRF-Token`` header; requests
that authenticate with a bearer header are exempt (a browser never adds one to a cross-site request), and a
browser's ``Sec-Fetch-Site: cross-site`` is refused outright. Routes get all of this with
``dependencies=EDITOR``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from functools import cache
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_LIFETIME = 12 * 3600  # seconds a rendered form stays usable: a working day, half Airflow's default login
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE_USER = "newswatch_user"
_STATE_MAY_EDIT = "newswatch_may_edit"


class Refused(Exception):
    """A change the request may not make (403); the app answers it as a page or as JSON."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def authenticated(request: Request, user: GetUserDep) -> None:
    """The dependency of every non-public route: Airflow's login (401 without it), the user kept for the pages."""
    setattr(request.state, _STATE_USER, user)


def current_user(request: Request) -> BaseUser | None:
    """The Airflow user :func:`authenticated` resolved for this request, or None (public routes)."""
    return getattr(request.state, _STATE_USER, None)


def may_edit(user: BaseUser | None) -> bool:
    """Whether ``user`` may change newswatch's configuration: the auth manager's answer for editing Variables."""
    if user is None:
        return False
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_variable(method="PUT", user=user))


def request_may_edit(request: Request) -> bool:
    """:func:`may_edit` for the request's user, asked once per request."""
    answer = getattr(request.state, _STATE_MAY_EDIT, None)
    if answer is None:
        answer = may_edit(current_user(request))
        setattr(request.state, _STATE_MAY_EDIT, answer)
    return answer


def require_editor(request: Request, _: Annotated[None, Depends(authenticated)]) -> BaseUser:
    """Dependency: the user, if they may change the configuration; 403 otherwise."""
    user = current_user(request)
    if user is None or not request_may_edit(request):
        raise Refused("Your Airflow role may read newswatch's configuration but not change it.")
    return user


# --- CSRF tokens --------------------------------------------------------------------------------------


@cache
def _key() -> bytes:
    """The signing key: derived from ``[api] secret_key`` so that every API server (and worker) agrees."""
    from airflow.configuration import conf

    secret = conf.get("api", "secret_key", fallback="") or ""
    if not secret:
        raise RuntimeError("[api] secret_key is empty: set it (the same on every API server) to sign form tokens")
    return hmac.new(secret.encode(), b"newswatch csrf v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(user_id: str, expires: int, salt: str) -> str:
    message = f"{user_id}\n{expires}\n{salt}".encode()
    return _b64(hmac.new(_key(), message, hashlib.sha256).digest())


def csrf_token(user: BaseUser, *, now: float | None = None) -> str:
    """A fresh token for ``user``'s forms: ``expires.salt.signature``."""
    expires = int(now if now is not None else time.time()) + CSRF_LIFETIME
    salt = _b64(secrets.token_bytes(12))
    return f"{expires}.{salt}.{_signature(user.get_id(), expires, salt)}"


def csrf_valid(token: str | None, user: BaseUser, *, now: float | None = None) -> bool:
    """Whether ``token`` was issued by these pages to ``user`` and has not expired."""
    if not token or len(token) > 200:
        return False
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    expires, salt, signature = int(parts[0]), parts[1], parts[2]
    if expires < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature, _signature(user.get_id(), expires, salt))


def _bearer(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


async def require_csrf(request: Request, user: Annotated[BaseUser, Depends(require_editor)]) -> None:
    """Dependency: a change must come from these pages (or from an API client with a bearer token)."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Refused("This change was sent from another site and was refused.")
    if _bearer(request):
        return
    token: Any = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        token = (await request.form()).get(CSRF_FIELD)
    if not isinstance(token, str) or not csrf_valid(token, user):
        raise Refused("This form has expired or did not come from these pages: reload the page and try again.")


# Dependencies of every route that changes configuration: login (401), permission (403), CSRF token (403).
EDITOR = [Depends(require_csrf)]
