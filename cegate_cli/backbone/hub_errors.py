"""What a Hub download asks for, and the Hub's failures turned into one-line messages with the fix.

huggingface_hub raises a dozen exception types (and its HTTP library a few more) for what a user
sees as four situations: the backbone does not exist, access is refused (gated or private), the
Hub cannot be reached, or offline mode is on and the files are not cached. `hub_errors` maps each
to one `CegateError` whose message says what to do next (accept a licence, set a token,
`cegate pull` while online). `hub.py` owns what is downloaded; this module owns how it fails.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from huggingface_hub import constants
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from cegate_cli.errors import (
    BackboneNotFoundError,
    CegateError,
    HubAuthError,
    HubConnectionError,
    InputError,
    OfflineNotCachedError,
)

HUB_PREFIX = "hf-hub:"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures raised by the HTTP library huggingface_hub uses (httpx2 or httpx in recent versions, requests in older ones)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attribute in ("TransportError", "ConnectionError", "Timeout"):
            error_type = getattr(module, attribute, None)
            if isinstance(error_type, type) and issubclass(error_type, BaseException):
                found.append(error_type)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


@dataclass(frozen=True)
class HubRequest:
    spec: str
    repo_id: str
    revision: str | None
    token: str | None
    subfolder: str | None
    offline: bool
    cache_dir: str | None

    def in_repo(self, filename: str) -> str:
        """A file's path in the repo: inside the model's folder when there is one."""
        return f"{self.subfolder}/{filename}" if self.subfolder else filename

    @property
    def shown(self) -> str:
        """How the backbone is named in messages: the user's spec, plus the repo when it was an alias."""
        if self.spec.startswith(HUB_PREFIX):
            return f"'{self.spec}'"
        return f"'{self.spec}' ({HUB_PREFIX}{self.repo_id})"


def _cache_location(request: HubRequest) -> str:
    return request.cache_dir or str(getattr(constants, "HF_HUB_CACHE", "the Hugging Face cache"))


def offline_error(request: HubRequest) -> OfflineNotCachedError:
    return OfflineNotCachedError(
        f"backbone {request.shown} is not in the local Hub cache ({_cache_location(request)}) and offline mode is on "
        f"(HF_HUB_OFFLINE). Run 'cegate pull {request.spec}' once while online, or unset HF_HUB_OFFLINE"
    )


def _auth_error(request: HubRequest, status: int | None) -> HubAuthError:
    answer = f"HTTP {status}" if status else "refused"
    return HubAuthError(
        f"the Hub refused access to backbone {request.shown} ({answer}): it is gated or private, or the token "
        "is not valid. "
        f"Accept its licence on https://huggingface.co/{request.repo_id} while logged in, then set HF_TOKEN "
        "or run 'hf auth login' (older clients: 'huggingface-cli login'), or pass --token"
    )


def _connection_error(request: HubRequest, detail: str) -> HubConnectionError:
    endpoint = str(getattr(constants, "ENDPOINT", "https://huggingface.co"))
    return HubConnectionError(
        f"could not reach the Hub at {endpoint} for backbone {request.shown} ({detail}) and it is not in the "
        f"local cache ({_cache_location(request)}). Check your connection or proxy and try again; "
        f"'cegate pull {request.spec}' downloads it once for offline use"
    )


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextmanager
def hub_errors(request: HubRequest, filename: str | None, revision: str | None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into cegate's, each with the fix in its message."""
    try:
        yield
    except CegateError:
        raise
    except GatedRepoError as exc:  # before RepositoryNotFoundError: it is a subclass
        raise _auth_error(request, _status_of(exc)) from exc
    except RepositoryNotFoundError as exc:
        raise BackboneNotFoundError(f"backbone {request.shown} not found on the Hub (check the name; private repos need HF_TOKEN)") from exc
    except RevisionNotFoundError as exc:
        raise BackboneNotFoundError(
            f"revision '{revision}' of backbone {request.shown} not found on the Hub; give a branch, tag or commit sha that exists"
        ) from exc
    except LocalEntryNotFoundError as exc:  # before EntryNotFoundError: a subclass in some versions
        if request.offline:
            raise offline_error(request) from exc
        for cause in _causes(exc):
            if isinstance(cause, GatedRepoError) or _status_of(cause) in (401, 403):
                raise _auth_error(request, _status_of(cause)) from exc
        detail = next((str(c).splitlines()[0] for c in _causes(exc) if isinstance(c, _TRANSPORT_ERRORS) and str(c)), "no answer")
        raise _connection_error(request, detail) from exc
    except EntryNotFoundError as exc:
        raise BackboneNotFoundError(f"backbone {request.shown} has no file '{filename}' at revision {revision or 'main'}") from exc
    except HFValidationError as exc:
        raise InputError(f"'{request.repo_id}' is not a valid Hub repo name: {exc}") from exc
    except HfHubHTTPError as exc:
        status = _status_of(exc)
        if status in (401, 403):
            raise _auth_error(request, status) from exc
        raise _connection_error(request, f"HTTP {status}" if status else str(exc).splitlines()[0]) from exc
    except _TRANSPORT_ERRORS as exc:
        if request.offline:
            raise offline_error(request) from exc
        raise _connection_error(request, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
