"""Fixtures of the reliability tests: figures output, a catalog behind a fault proxy.

Figures (requests, faults, retries, timings) are printed (even without ``-s``) and
collected into ``reliability-figures.json`` in pytest's base temp directory, or in the
file named by ``$DERIVA_UPLOAD_FIGURES`` when set, so ``docs/reliability.md`` can
quote a run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIGURES_ENV = "DERIVA_UPLOAD_FIGURES"

_FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = Path(os.environ.get(FIGURES_ENV) or tmp_path_factory.getbasetemp() / "reliability-figures.json")
    yield path
    if _FIGURES:
        old: dict[str, Any] = {}
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
        path.write_text(json.dumps({**old, **_FIGURES}, indent=2, sort_keys=True, default=str))


@pytest.fixture
def record_figures(figures_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[str, dict[str, Any]], None]:
    """``record_figures(name, {...})``: print one figures line and keep it for the JSON file."""

    def record(name: str, data: dict[str, Any]) -> None:
        _FIGURES[name] = data
        with capsys.disabled():
            print(f"\n[figures] {name}: {json.dumps(data, sort_keys=True, default=str)}")

    return record


# -- a catalog of our own: separate process, with a request log ------------------------------


@pytest.fixture(scope="session")
def rcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Embedded catalog in its own process (server and client do not share a GIL), request log on."""
    from deriva_upload.catalog import EmbeddedCatalog

    base = tmp_path_factory.mktemp("rcat")
    with EmbeddedCatalog(data_dir=base / "data", request_log=base / "requests.jsonl", mode="process") as cat:
        yield cat


@pytest.fixture
def rcid(rcat: Any) -> str:
    """A fresh catalog id (DerivaML + demo schema) on :func:`rcat`."""
    return rcat.create_catalog()


class LogCursor:
    """Lines of the request log written after a mark."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        from tests.reliability.helpers import read_request_log

        return len(read_request_log(self.path))

    def since(self, mark: int) -> list[Any]:
        from tests.reliability.helpers import read_request_log

        return read_request_log(self.path)[mark:]


@pytest.fixture
def request_log(rcat: Any) -> LogCursor:
    return LogCursor(rcat.request_log)


@pytest.fixture
def salt(request: pytest.FixtureRequest) -> str:
    """Content salt unique to the test and stable across runs (Hatrac is shared by the catalogs of a session)."""
    return request.node.name
