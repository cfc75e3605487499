"""The embedded catalog: a local stand-in for a DERIVA server (ERMrest + Hatrac + /authn).

It speaks the subset of ERMrest, Hatrac and webauthn that deriva-py's unchanged clients
(``ErmrestCatalog``, ``getPathBuilder()``, ``Model``, ``HatracStore``, ``GenericUploader``)
use, backed by SQLite files and a local folder.  It exists for development, tests, demos
and single-user work; it has no ACLs, history or Chaise.  Real ERMrest/Hatrac deployments
are the path to scale and to multi-user use.

Server side only: nothing here imports ``deriva_upload.engine``.
"""

from __future__ import annotations

from .app import create_app
from .server import EmbeddedCatalog, serve

__all__ = ["EmbeddedCatalog", "create_app", "serve"]
