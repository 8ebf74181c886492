"""Is the Hugging Face hub reachable? One quick TCP probe per endpoint and process, shared by every plugin that
loads from the hub (datasets and checkpoints), so that an offline run fails in seconds with a one-line error
instead of retrying for tens of seconds inside ``datasets`` / ``transformers``.

The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co); where a proxy applies (``HTTPS_PROXY`` /
``ALL_PROXY``) the proxy is probed instead. The answer is memoised per address for the process: it is a fact about
the network, not configuration, and the registry creates a component instance per use, so an instance-level memo
would probe again for every model.
"""

from __future__ import annotations

import os

#: Seconds a TCP connect to the hub may take (name resolution included).
HUB_PROBE_TIMEOUT = 2.5
DEFAULT_ENDPOINT = "https://huggingface.co"

_REACHABLE: dict[tuple[str, int], bool] = {}


def hub_endpoint() -> str:
    """The hub's URL: ``HF_ENDPOINT`` or https://huggingface.co, without a trailing slash."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def _probe_address(endpoint: str) -> tuple[str, int] | None:
    """``(host, port)`` a connection to ``endpoint`` goes to: its proxy's when one applies, else its own."""
    import urllib.request
    from urllib.parse import urlsplit

    try:
        url = urlsplit(endpoint)
        host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if host and proxy and not urllib.request.proxy_bypass(host):
            purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            default = {"https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080}.get(purl.scheme, 80)
            host, port = purl.hostname, purl.port or default
    except ValueError:  # a malformed URL or port
        return None
    return (host, port) if host else None


def _tcp_reachable(address: tuple[str, int], timeout: float) -> bool:
    """Whether ``address`` accepts a TCP connection within ``timeout`` s (name resolution included)."""
    import socket
    import threading

    ok: list[bool] = []

    def attempt():
        try:
            with socket.create_connection(address, timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=attempt, name="w2s-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout + 0.5)  # bounds a slow DNS lookup too, which the socket timeout does not
    return bool(ok)


def hub_reachable(endpoint: str | None = None) -> bool:
    """Whether the hub (``endpoint``, default :func:`hub_endpoint`) accepts a TCP connection within
    :data:`HUB_PROBE_TIMEOUT` s; probed at most once per address and process."""
    address = _probe_address(endpoint or hub_endpoint())
    if address is None:
        return False
    if address not in _REACHABLE:
        _REACHABLE[address] = _tcp_reachable(address, HUB_PROBE_TIMEOUT)
    return _REACHABLE[address]


__all__ = ["hub_endpoint", "hub_reachable"]
