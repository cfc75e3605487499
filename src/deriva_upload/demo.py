"""A realistic ML execution, staged with our path builders, for ``deriva-upload demo``.

Two halves:

* :func:`stage_execution` is the (pure-ish) generator: given a prefix, an execution
  RID, the model and a few sizes it writes the seed's directory layout — small valid
  PNG images with per-image metadata (some NULL), a large model file, execution
  metadata files, asset types, a feature CSV referring to the images and a table CSV —
  and returns a :class:`DemoStaging` describing what the catalog should hold afterwards.
  It writes files only; it never talks to a server.
* :func:`prepare_catalog` and :func:`lease_rids` do the catalog side DerivaML does
  before staging: insert the ``Subject`` rows the images refer to, insert the
  ``Execution`` row, lease RIDs for the files (``public:ERMrest_RID_Lease``).

:func:`run_demo` ties them to the embedded catalog, the engine and the terminal (the
``deriva-upload demo`` command); the generator above it works offline.
"""

from __future__ import annotations

import csv
import json
import random
import struct
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from deriva_upload import layout
from deriva_upload.errors import ConfigError
from deriva_upload.model import DerivaModel

MiB = 1024 * 1024

DOMAIN_SCHEMA = "demo-schema"
ML_SCHEMA = "deriva-ml"
IMAGE_TABLE = f"{DOMAIN_SCHEMA}:Image"
SUBJECT_TABLE = f"{DOMAIN_SCHEMA}:Subject"
EXECUTION_ASSET_TABLE = f"{ML_SCHEMA}:Execution_Asset"
EXECUTION_METADATA_TABLE = f"{ML_SCHEMA}:Execution_Metadata"
FEATURE_TABLE = f"{DOMAIN_SCHEMA}:Execution_Image_Quality"
# Feature directory name: DerivaML names the feature table Execution_<Target>_<Feature>.
FEATURE_TARGET = "Image"
FEATURE_NAME = "Quality"

# Defaults of ``deriva-upload demo``: a few hundred small images plus one model file
# large enough to take the chunked (upload job) path, yet the whole demo stays well
# under ~30 s on a 2-core machine.
DEFAULT_FILES = 300
DEFAULT_LARGE_MB = 64
# Subjects the images are spread over (inserted before staging: images refer to them).
DEFAULT_SUBJECTS = 12
# Extra subjects delivered through the table CSV (rows inserted by the upload itself).
TABLE_CSV_SUBJECTS = 5
# Every NULL_EVERY-th image gets a NULL metadata value (cycling through the columns).
NULL_EVERY = 7
# Side of the generated square PNG images, in pixels (a few hundred bytes each).
IMAGE_SIDE = 32
# Lease batch size: DerivaML leases RIDs in chunks of 500 (PENDING_ROWS_LEASE_CHUNK).
LEASE_CHUNK = 500

DEMO_STATE_FILE = "demo.json"
"""Written next to the staging prefix so a second ``demo --data-dir D`` run re-uses it."""


# -- bytes ------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(index: int, side: int = IMAGE_SIDE) -> bytes:
    """A valid, deterministic ``side`` x ``side`` RGB PNG, different for every ``index``.

    Built with zlib + struct (no imaging library): a colour gradient whose hue depends on
    ``index``, plus the index written into the first pixel row so no two images share
    bytes (and therefore MD5).
    """
    if side < 4:
        raise ValueError("side must be >= 4")
    rnd = random.Random(index)
    r0, g0, b0 = rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)
    rows = []
    stamp = index.to_bytes(8, "big")
    for y in range(side):
        row = bytearray([0])  # filter type 0 (None) for every scanline
        for x in range(side):
            row += bytes(((r0 + 4 * x) % 256, (g0 + 4 * y) % 256, (b0 + 2 * (x + y)) % 256))
        if y == 0:
            row[1 : 1 + len(stamp)] = stamp
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + _png_chunk(b"IEND", b""))


def write_model_file(path: Path, nbytes: int, seed: int = 0) -> None:
    """Write ``nbytes`` of deterministic, incompressible-looking bytes (a fake model checkpoint).

    One pseudo-random MiB is generated once and written repeatedly, each copy stamped with
    its offset, so writing 64 MiB costs a few tens of milliseconds.
    """
    block = random.Random(seed).randbytes(MiB)
    with open(path, "wb") as f:
        written = 0
        counter = 0
        while written < nbytes:
            piece = struct.pack(">Q", counter) + block[8:]
            n = min(len(piece), nbytes - written)
            f.write(piece[:n])
            written += n
            counter += 1


# -- what gets staged -------------------------------------------------------------------


@dataclass
class DemoStaging:
    """What the generator wrote and what the catalog should hold after the upload."""

    prefix: str
    execution_rid: str
    files: int = 0
    bytes: int = 0
    # "schema:Table" -> number of asset files staged for that table
    assets: dict[str, int] = field(default_factory=dict)
    feature_rows: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    subject_rids: list[str] = field(default_factory=list)
    null_values: int = 0
    # RIDs written into the table CSV (empty when staged without leases)
    table_rids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DemoStaging:
        return cls(**doc)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DemoStaging:
        return cls.from_dict(json.loads(path.read_text()))


def image_metadata(index: int, subject_rids: Sequence[str], base: date = date(2024, 3, 1)) -> dict[str, Any]:
    """Metadata of demo image ``index``: date, timestamp and subject, every 7th with one NULL."""
    day = base + timedelta(days=index % 90)
    when = datetime(day.year, day.month, day.day, 8 + index % 10, (7 * index) % 60, tzinfo=timezone.utc)
    meta: dict[str, Any] = {
        "Acquisition_Date": day.isoformat(),
        "Acquisition_Time": when.isoformat(),
        "Subject": subject_rids[index % len(subject_rids)] if subject_rids else None,
    }
    if index % NULL_EVERY == NULL_EVERY - 1:
        column = sorted(meta)[(index // NULL_EVERY) % len(meta)]
        meta[column] = None
    return meta


def _take(rids: Iterator[str] | None) -> str | None:
    if rids is None:
        return None
    try:
        return next(rids)
    except StopIteration:
        raise ConfigError("not enough leased RIDs for the demo files") from None


def rids_needed(n_images: int) -> int:
    """How many RIDs :func:`stage_execution` consumes (images, model, 2 metadata files, CSV rows)."""
    return n_images + 1 + 2 + TABLE_CSV_SUBJECTS


def stage_execution(
    prefix: Path | str,
    exec_rid: str,
    model: DerivaModel,
    subject_rids: Sequence[str],
    n_images: int = DEFAULT_FILES,
    large_bytes: int = DEFAULT_LARGE_MB * MiB,
    rids: Iterable[str] | None = None,
) -> DemoStaging:
    """Write a realistic execution tree under ``prefix`` with the seed's path builders.

    ``rids`` (optional) are pre-allocated RIDs (leases): one per asset file and per table
    CSV row, used in ``asset_file_path(..., rid=...)`` like DerivaML does; without them
    the files are written without a RID segment and the server assigns RIDs.
    """
    if n_images < 0 or large_bytes < 0:
        raise ConfigError("demo sizes must be >= 0")
    rid_iter = iter(rids) if rids is not None else None
    image_t = model.name_to_table(IMAGE_TABLE)
    asset_t = model.name_to_table(EXECUTION_ASSET_TABLE)
    meta_t = model.name_to_table(EXECUTION_METADATA_TABLE)
    staging = DemoStaging(prefix=str(prefix), execution_rid=exec_rid, subject_rids=list(subject_rids))

    def count(table: str, nbytes: int) -> None:
        staging.assets[table] = staging.assets.get(table, 0) + 1
        staging.files += 1
        staging.bytes += nbytes

    # Images with metadata in the path (NULL as the sentinel segment).
    image_types: dict[str, list[str]] = {}
    image_paths: list[Path] = []
    for i in range(n_images):
        meta = image_metadata(i, subject_rids)
        staging.null_values += sum(v is None for v in meta.values())
        name = f"scan_{i:05d}.png"
        path = layout.asset_file_path(prefix, exec_rid, image_t, name, meta, rid=_take(rid_iter))
        data = tiny_png(i)
        path.write_bytes(data)
        image_paths.append(path)
        image_types[name] = ["Image"]
        count(IMAGE_TABLE, len(data))

    # The trained model: one large file (chunked upload when above the chunk size).
    model_path = layout.asset_file_path(prefix, exec_rid, asset_t, "model.bin", {}, rid=_take(rid_iter))
    write_model_file(model_path, large_bytes, seed=len(exec_rid))
    count(EXECUTION_ASSET_TABLE, large_bytes)

    # Execution metadata: the run's configuration and environment snapshot.
    config = {"execution": exec_rid, "model": {"arch": "resnet18", "epochs": 3, "lr": 0.001},
              "dataset": {"images": n_images}, "seed": 42}
    env_lines = ["python=3.11", "torch=2.3.1", "numpy=1.26.4", "deriva-upload=0.1.0", "host=demo-runner"]
    meta_files = {"config.json": json.dumps(config, indent=2) + "\n",
                  "environment.txt": "\n".join(env_lines) + "\n"}
    for name, text in meta_files.items():
        path = layout.asset_file_path(prefix, exec_rid, meta_t, name, {}, rid=_take(rid_iter))
        path.write_text(text)
        count(EXECUTION_METADATA_TABLE, len(text.encode()))

    # Asset types, one JSON object per line: {"file name": ["Type", ...]} (the seed's format).
    types_by_table = {
        image_t: image_types,
        asset_t: {"model.bin": ["Model_File"]},
        meta_t: {"config.json": ["Execution_Config"], "environment.txt": ["Runtime_Env"]},
    }
    for table, mapping in types_by_table.items():
        with open(layout.asset_type_path(prefix, exec_rid, table), "w") as f:
            for name, types in mapping.items():
                f.write(json.dumps({name: types}) + "\n")

    # A feature: image quality, referring to the staged image files by path.
    fdir = layout.feature_dir(prefix, exec_rid, DOMAIN_SCHEMA, FEATURE_TARGET, FEATURE_NAME)
    with open(fdir / f"{FEATURE_NAME}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image", "ImageQuality"])
        for i, path in enumerate(image_paths):
            w.writerow([str(path), "Bad" if i % 5 == 4 else "Good"])
    staging.feature_rows = len(image_paths)

    # A plain table CSV: more subjects, with pre-allocated RIDs when leased (idempotent).
    table_csv = layout.execution_root(prefix, exec_rid) / "table" / DOMAIN_SCHEMA / "Subject" / "Subject.csv"
    table_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(table_csv, "w", newline="") as f:
        w = csv.writer(f)
        rows = [(_take(rid_iter), f"demo subject {k + 1} (from table CSV)") for k in range(TABLE_CSV_SUBJECTS)]
        if rid_iter is not None:
            staging.table_rids = [str(r) for r, _ in rows]
            w.writerow(["RID", "Name"])
            w.writerows(rows)
        else:
            w.writerow(["Name"])
            w.writerows([(name,) for _, name in rows])
    staging.table_rows[SUBJECT_TABLE] = TABLE_CSV_SUBJECTS
    return staging


# -- the catalog side ---------------------------------------------------------------------


def _post(catalog: Any, path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = catalog.post(path, json=rows)
    resp.raise_for_status()
    return resp.json()


def lease_rids(catalog: Any, n: int) -> list[str]:
    """Lease ``n`` RIDs from ``public:ERMrest_RID_Lease`` (chunks of :data:`LEASE_CHUNK`)."""
    out: list[str] = []
    while len(out) < n:
        k = min(LEASE_CHUNK, n - len(out))
        rows = _post(catalog, "/entity/public:ERMrest_RID_Lease", [{"ID": str(uuid.uuid4())} for _ in range(k)])
        out.extend(r["RID"] for r in rows)
    return out


def prepare_catalog(catalog: Any, n_subjects: int = DEFAULT_SUBJECTS,
                    description: str = "deriva-upload demo execution") -> tuple[str, list[str]]:
    """Insert the demo's ``Subject`` rows and its ``Execution`` row; return (exec RID, subject RIDs).

    ``catalog`` is a deriva-py ``ErmrestCatalog`` (anything with ``post(path, json=)``).
    """
    subjects = _post(catalog, f"/entity/{SUBJECT_TABLE}",
                     [{"Name": f"demo subject {k + 1}"} for k in range(n_subjects)])
    execution = _post(catalog, f"/entity/{ML_SCHEMA}:Execution", [{"Description": description}])
    return execution[0]["RID"], [r["RID"] for r in subjects]


# -- checking what arrived ---------------------------------------------------------------


@dataclass(frozen=True)
class RowCheck:
    """One expected row count and what the catalog holds."""

    what: str
    expected: int
    actual: int

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def _count(catalog: Any, path: str) -> int:
    resp = catalog.get(f"/aggregate/{path}/n:=cnt(*)")
    resp.raise_for_status()
    rows = resp.json()
    return int(rows[0]["n"]) if rows else 0


def check_row_counts(catalog: Any, staging: DemoStaging) -> list[RowCheck]:
    """Rows the upload must have produced for this execution, counted in the catalog."""
    rid = staging.execution_rid
    link_tables = {IMAGE_TABLE: f"{DOMAIN_SCHEMA}:Image_Execution",
                   EXECUTION_ASSET_TABLE: f"{ML_SCHEMA}:Execution_Asset_Execution",
                   EXECUTION_METADATA_TABLE: f"{ML_SCHEMA}:Execution_Metadata_Execution"}
    checks = [RowCheck(f"{table} rows linked to execution {rid}", n,
                       _count(catalog, f"{link_tables[table]}/Execution={rid}"))
              for table, n in sorted(staging.assets.items()) if table in link_tables]
    checks.append(RowCheck(f"{FEATURE_TABLE} rows of execution {rid}", staging.feature_rows,
                           _count(catalog, f"{FEATURE_TABLE}/Execution={rid}")))
    if staging.table_rids:
        found = _count(catalog, f"{SUBJECT_TABLE}/RID=any({','.join(staging.table_rids)})")
        checks.append(RowCheck(f"{SUBJECT_TABLE} rows from the table CSV", len(staging.table_rids), found))
    return checks


# -- the demo command ----------------------------------------------------------------------


def _reuse_staging(state_path: Path, staging_dir: Path) -> DemoStaging | None:
    if not state_path.is_file():
        return None
    try:
        staging = DemoStaging.load(state_path)
    except (OSError, ValueError, TypeError):
        return None
    if not (staging_dir / "deriva-ml" / "execution" / staging.execution_rid).is_dir():
        return None
    return staging


def _route_server_logs() -> None:
    """Keep the in-process server's own log lines off the terminal.

    uvicorn writes its error log straight to stderr, which would tear through the live
    progress bars; the client already reports every failed request per file. With
    ``--debug`` (root logger at DEBUG) the records go to the CLI's log handler instead.
    """
    import logging

    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = debug
        lg.setLevel(logging.DEBUG if debug else logging.CRITICAL)


def run_demo(*, files: int = DEFAULT_FILES, large_mb: int = DEFAULT_LARGE_MB, data_dir: Path | None = None,
             options: Any = None, console: Any, out: Any, mode: str = "plain", json_path: Path | None = None,
             write_json: Any = None) -> int:
    """``deriva-upload demo``: embedded catalog, staged execution, upload, summary, verify. Returns the exit code.

    With ``data_dir`` given and already used by a previous demo, the same staged execution
    is uploaded again into the same catalog: everything shows as already present.
    """
    import tempfile
    import time

    from deriva.core import ErmrestCatalog

    from deriva_upload import cli
    from deriva_upload.catalog import EmbeddedCatalog
    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions
    from deriva_upload.render import human_bytes

    options = options or UploadOptions()
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="deriva-upload-demo-"))
    data_dir = Path(data_dir).resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"--data-dir {data_dir} is not a directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    catalog_dir, staging_dir, state_path = data_dir / "catalog", data_dir / "staging", data_dir / DEMO_STATE_FILE
    docs: dict[str, Any] = {}

    def capture(key: str) -> Any:
        return lambda _path, doc: docs.__setitem__(key, doc)

    started = time.monotonic()
    console.print("[bold]deriva-upload demo[/]: stage a realistic ML execution, upload it into a local "
                  "embedded catalog, verify it", highlight=False)
    with EmbeddedCatalog(data_dir=catalog_dir, port=0) as cat:
        _route_server_logs()
        console.print(f"[bold]embedded catalog[/] running at {cat.base_url} (catalog {cat.catalog_id})",
                      highlight=False)
        ermrest = ErmrestCatalog(cat.scheme, cat.hostname, str(cat.catalog_id))
        model = DerivaModel.from_catalog(ermrest)
        staging = _reuse_staging(state_path, staging_dir)
        if staging is not None:
            console.print(f"re-using execution [bold]{staging.execution_rid}[/] staged by an earlier demo run "
                          f"({staging.files} files, {human_bytes(staging.bytes)})", highlight=False)
        else:
            what = f"{files} images, a {large_mb} MiB model, config files, a feature and a table CSV"
            status = console.status(f"staging an execution: {what}…") if mode == "rich" else None
            if status is None:
                console.print(f"staging an execution: {what}", highlight=False, markup=False)
            else:
                status.start()
            try:
                exec_rid, subjects = prepare_catalog(ermrest)
                rids = lease_rids(ermrest, rids_needed(files))
                staging = stage_execution(staging_dir, exec_rid, model, subjects, n_images=files,
                                          large_bytes=large_mb * MiB, rids=rids)
            finally:
                if status is not None:
                    status.stop()
            staging.save(state_path)
            console.print(f"staged execution [bold]{exec_rid}[/]: {staging.files} files, "
                          f"{human_bytes(staging.bytes)}, {staging.null_values} NULL metadata values, "
                          f"{len(rids)} leased RIDs", highlight=False)
        target = cli.Target(Destination(cat.scheme, cat.hostname, str(cat.catalog_id)), ermrest, model)
        code = cli.do_upload(target, staging_dir, options, execution=staging.execution_rid, console=console,
                             out=out, mode=mode, json_path=None, write_json=capture("upload"))
        code = max(code, cli.do_verify(target, staging_dir, options, execution=staging.execution_rid,
                                       console=console, out=out, mode=mode, json_path=None,
                                       write_json=capture("verify")))
        checks = check_row_counts(ermrest, staging)
        bad = [c for c in checks if not c.ok]
        if bad:
            for c in bad:
                out.print(f"[bold red]row count mismatch[/]: {c.what}: expected {c.expected}, found {c.actual}",
                          highlight=False)
            code = max(code, 1)
        else:
            n = sum(c.expected for c in checks)
            out.print(f"[bold green]row counts match[/]: {n} association, feature and table rows "
                      f"({len(checks)} checks)", highlight=False)
        docs["row_counts"] = [asdict(c) | {"ok": c.ok} for c in checks]
    elapsed = time.monotonic() - started
    exec_dir = staging_dir / "deriva-ml" / "execution" / staging.execution_rid
    out.print("")
    out.print(f"[bold]Where the data is[/] ({elapsed:.1f} s in all)", highlight=False)
    out.print(f"  catalog data : {catalog_dir}", highlight=False, soft_wrap=True)
    out.print(f"  staged files : {exec_dir}", highlight=False, soft_wrap=True)
    out.print("  browse it    : "
              f"deriva-upload serve --data-dir {catalog_dir} --port 8080", highlight=False, soft_wrap=True)
    out.print("                 curl 'http://localhost:8080/ermrest/catalog/1/entity/demo-schema:Image?limit=3'",
              highlight=False, soft_wrap=True)
    out.print(f"  run it again : deriva-upload demo --data-dir {data_dir}   (everything already present)",
              highlight=False, soft_wrap=True)
    docs["data_dir"] = str(data_dir)
    docs["staging"] = staging.to_dict()
    if write_json is not None:
        write_json(json_path, docs)
    return code


__all__ = [
    "RowCheck",
    "check_row_counts",
    "run_demo",
    "DEFAULT_FILES",
    "DEFAULT_LARGE_MB",
    "DemoStaging",
    "image_metadata",
    "lease_rids",
    "prepare_catalog",
    "rids_needed",
    "stage_execution",
    "tiny_png",
    "write_model_file",
]
