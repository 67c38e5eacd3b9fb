"""The REST client: one call per command; an API error ends the command with its message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import typer

from ferry_cli import config
from ferry_cli.output import print_error

API = "/api/v1"
TIMEOUT = 30.0


class Client:
    def __init__(self, cfg: config.Config | None = None) -> None:
        self.config = cfg or config.load()
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        self.http = httpx.Client(base_url=self.config.url + API, headers=headers, timeout=TIMEOUT)

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self._answer(self._send("GET", path, params=query))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._answer(self._send("POST", path, json=body))

    def delete(self, path: str) -> Any:
        return self._answer(self._send("DELETE", path))

    def stream_events(self, after: int | None) -> Iterator[dict[str, Any]]:
        """Server-sent events of /events/stream, as the stored events they carry."""
        import json

        params = {} if after is None else {"after": after}
        with self.http.stream("GET", "/events/stream", params=params, timeout=None) as response:
            if response.is_error:
                response.read()
                self._answer(response)
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line.removeprefix("data:").strip())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            print_error(f"cannot reach {self.config.url}: {error}")
            raise typer.Exit(1) from None

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.is_error:
            print_error(_error_text(response))
            raise typer.Exit(1)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('error', response.status_code)}: {body['message']}"
    return f"HTTP {response.status_code}: {body}"
