"""``python -m deriva_upload.catalog``: run the embedded catalog in the foreground."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .server import TOKEN_ENV, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deriva_upload.catalog", description="Run the embedded DERIVA catalog.")
    p.add_argument("--data-dir", required=True, type=Path, help="folder holding the catalogs and Hatrac objects")
    p.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--token", default=None, help=f"require this token (default: ${TOKEN_ENV} if set)")
    p.add_argument("--tls", action="store_true", help="serve https with a self-signed certificate kept in the data dir")
    p.add_argument("--request-log", type=Path, default=None, help="append one JSON line per request to this file")
    p.add_argument("--json", action="store_true", help="announce the listening address as one JSON line")
    args = p.parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or None

    def announce(info: dict) -> None:
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"Embedded catalog listening on {info['base_url']} (catalog {info['catalog_id']}, data in {info['data_dir']})", flush=True)
            print(f"Give deriva-py the host {info['hostname']!r}.", flush=True)
            if info["ca_file"]:
                print(f"TLS CA certificate: {info['ca_file']}", flush=True)
                print(f"  export REQUESTS_CA_BUNDLE={info['ca_file']}", flush=True)

    try:
        serve(args.data_dir, host=args.host, port=args.port, token=token, tls=args.tls, request_log=args.request_log, announce=announce)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
