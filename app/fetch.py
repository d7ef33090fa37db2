"""Fetching a video from a URL, server-side: every redirect hop checked, size and time capped.

Security note: the address check (no loopback, private, link-local, ... addresses unless
``allow_private``) is made when the host is resolved, before each hop's request. httpx then
resolves the name again to connect, so a DNS server that answers differently the second time
(DNS rebinding) could still steer a request to an internal address. A deployment that must
rule this out should also block private ranges at the network level for the API process: an
egress proxy that refuses them, or firewall / network-policy rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from pathlib import Path
from urllib.parse import unquote

import httpx
from python_multipart.multipart import parse_options_header

from app.errors import ApiError, ErrorCode
from app.uploads import Received, Spool, decode_header_text, safe_filename, too_large

_USER_AGENT = "vidcap-fetch/0.1"
# RFC 6266 / 5987: filename*=UTF-8''name%20with%20spaces.mp4 (python-multipart skips it).
_FILENAME_STAR = re.compile(r"""filename\*\s*=\s*([^']*)'[^']*'([^;\s]+)""", re.IGNORECASE)


async def fetch_url(
    url: str,
    dest_dir: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
    allow_private: bool,
) -> Received:
    """Download ``url`` to a temporary file in ``dest_dir``, following redirects by hand.

    Every hop (the URL and each redirect target) must be http(s), carry no credentials and,
    unless ``allow_private``, resolve only to public addresses.

    Args:
        url: The http(s) URL of the video.
        dest_dir: Directory for the temporary file (created if missing), named
            ``.upload-<hex>.part``.
        max_bytes: Largest accepted body, in bytes.
        timeout_s: Deadline for the whole fetch: resolving, connecting, every hop and the body.
        max_redirects: Redirects followed at most.
        allow_private: Allow addresses that are not public (loopback, private, link-local,
            multicast, reserved, unspecified).

    Returns:
        The fetched file, ``fields`` empty. The caller owns ``path`` from here.

    Raises:
        ApiError: VALIDATION_ERROR (not a URL); URL_NOT_ALLOWED (not http(s), credentials, a
            non-public address); TOO_MANY_REDIRECTS; FETCH_FAILED (DNS or connection
            failure, a bad redirect, a final status that is not 2xx); FETCH_TIMEOUT;
            FILE_TOO_LARGE (a Content-Length over ``max_bytes`` is refused before reading the
            body, otherwise reading stops as soon as the body passes it); EMPTY_FILE.

        Whatever is raised, including cancellation, no temporary file is left behind.
    """
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"Not a valid URL: {exc}") from None
    try:
        # One deadline over everything: httpx's own timeouts are per operation, so a server
        # trickling a byte a second, or a long redirect chain, would otherwise never end.
        async with asyncio.timeout(timeout_s):
            return await _fetch(
                current, dest_dir, max_bytes, timeout_s, max_redirects, allow_private
            )
    except (TimeoutError, httpx.TimeoutException):
        raise ApiError(
            ErrorCode.FETCH_TIMEOUT, f"Fetching the URL took longer than {timeout_s:g} s."
        ) from None


async def _fetch(
    current: httpx.URL,
    dest_dir: Path,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
    allow_private: bool,
) -> Received:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    # trust_env=False: proxy settings from the environment would route requests past the
    # address check's assumptions (and .netrc would add credentials).
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout_s, trust_env=False, headers=headers
    ) as client:
        redirects = 0
        while True:
            _check_shape(current)
            if not allow_private:
                await _check_addresses(current)
            try:
                async with client.stream("GET", current) as response:
                    if response.is_redirect:
                        if redirects >= max_redirects:
                            raise ApiError(
                                ErrorCode.TOO_MANY_REDIRECTS,
                                f"The URL redirected more than {max_redirects} times.",
                            )
                        redirects += 1
                        current = _redirect_target(current, response.headers["location"])
                        continue
                    if not 200 <= response.status_code < 300:
                        status = f"{response.status_code} {response.reason_phrase}".strip()
                        raise ApiError(
                            ErrorCode.FETCH_FAILED, f"The server answered HTTP {status}."
                        )
                    return await _save(response, dest_dir, max_bytes)
            except httpx.TimeoutException:
                raise  # fetch_url's FETCH_TIMEOUT
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ApiError(
                    ErrorCode.FETCH_FAILED,
                    f"Could not fetch the URL ({type(exc).__name__}: {exc or 'no detail'}).",
                ) from None


def _check_shape(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise ApiError(ErrorCode.URL_NOT_ALLOWED, "Only http and https URLs can be fetched.")
    if url.userinfo:
        raise ApiError(
            ErrorCode.URL_NOT_ALLOWED, "URLs with credentials (user:password@) are not accepted."
        )
    if not url.host:
        raise ApiError(ErrorCode.URL_NOT_ALLOWED, "The URL has no host.")


async def _check_addresses(url: httpx.URL) -> None:
    """Refuse a host that resolves to any non-public address (see the module's note)."""
    host = url.raw_host.decode("ascii")  # IDNA-encoded, IPv6 without brackets
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise ApiError(
            ErrorCode.FETCH_FAILED, f"Could not resolve the host {url.host!r} ({exc})."
        ) from None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        kind = _non_public_kind(address)
        if kind is not None:
            raise ApiError(
                ErrorCode.URL_NOT_ALLOWED,
                f"The host {url.host!r} resolves to a {kind} address ({address}), which this "
                "server does not fetch from.",
            )


def _non_public_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1; Python 3.11's flags do not look inside it.
        address = address.ipv4_mapped
    for kind, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    if not address.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "non-public"
    return None


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        return current.join(location)  # a relative Location is relative to this hop
    except httpx.InvalidURL:
        raise ApiError(
            ErrorCode.FETCH_FAILED, f"The server redirected to an invalid URL: {location!r}."
        ) from None


async def _save(response: httpx.Response, dest_dir: Path, max_bytes: int) -> Received:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    spool = Spool(dest_dir, max_bytes)
    try:
        async for chunk in response.aiter_bytes():
            spool.add(chunk)
            await spool.maybe_flush()
        digest = await spool.finish()
        if spool.size == 0:
            raise ApiError(ErrorCode.EMPTY_FILE, "The URL's body is empty (0 bytes).")
        return Received(
            path=spool.path,
            size=spool.size,
            sha256=digest,
            filename=_filename(response),
            fields={},
        )
    except BaseException:
        # BaseException: the deadline (a cancellation) must not leave a file either.
        spool.discard()
        raise


def _filename(response: httpx.Response) -> str | None:
    """The name from Content-Disposition, else the final URL's last path segment."""
    raw = next(
        (value for key, value in response.headers.raw if key.lower() == b"content-disposition"),
        None,
    )
    if raw is not None:
        text = decode_header_text(raw)
        star = _FILENAME_STAR.search(text)
        if star:
            charset = star.group(1) or "utf-8"
            try:
                name = safe_filename(unquote(star.group(2), encoding=charset, errors="replace"))
            except LookupError:  # an unknown charset
                name = None
            if name:
                return name
        _, options = parse_options_header(raw)
        if b"filename" in options:
            name = safe_filename(decode_header_text(options[b"filename"]))
            if name:
                return name
    return safe_filename(response.url.path.rsplit("/", 1)[-1])
