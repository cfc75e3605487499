"""``DerivaModel``: the few questions the upload code asks of a catalog model.

A thin adapter over deriva-py's :class:`deriva.core.ermrest_model.Model` so the
rest of the package never re-parses schema JSON by hand. It answers what the seed's
``deriva_ml.model.catalog.DerivaModel`` answers for uploads, with the asset test of
the seed's era (deriva-py 1.7.12 has no ``Table.is_asset``).
"""

from __future__ import annotations

from typing import Any, Iterable

from deriva.core.ermrest_model import Model, Table

from .errors import DerivaMLException

ML_SCHEMA = "deriva-ml"
"""Default name of the DerivaML schema."""

SYSTEM_SCHEMAS = frozenset({"public", "www", "WWW"})

DerivaSystemColumns = ["RID", "RCT", "RMT", "RCB", "RMB"]
"""ERMrest system columns, in the seed's order."""

DerivaAssetColumns = frozenset({"Filename", "URL", "Length", "MD5", "Description"}) | frozenset(DerivaSystemColumns)
"""Columns of an asset table that are not user metadata."""

ASSET_ANNOTATION = "tag:isrd.isi.edu,2017:asset"

TableInput = "str | Table"


def is_asset_table(table: Table) -> bool:
    """deriva-py 2.0's ``Table.is_asset()`` test, which the seed's model delegates to.

    URL, Filename, Length and MD5 exist; URL, Length and MD5 are NOT NULL; URL carries
    the asset annotation. A hand-made table without the annotation is not an asset.
    """
    cols = {c.name: c for c in table.column_definitions}
    if not {"URL", "Filename", "Length", "MD5"} <= cols.keys():
        return False
    if any(cols[c].nullok for c in ("URL", "Length", "MD5")):
        return False
    return ASSET_ANNOTATION in (cols["URL"].annotations or {})


def asset_metadata_columns(table: Table) -> list[str]:
    """Metadata columns of an asset table, in the one order every path and regex uses.

    Sorted (case-sensitive), because the seed's set order depended on the hash seed
    (seed quirk 1).
    """
    return sorted({c.name for c in table.column_definitions} - DerivaAssetColumns)


class DerivaModel:
    """What upload code needs to know about a catalog: tables, assets, metadata, where it lives."""

    def __init__(
        self,
        model: Model,
        ml_schema: str = ML_SCHEMA,
        domain_schemas: str | Iterable[str] | None = None,
        catalog: Any = None,
    ) -> None:
        self.model = model
        self.ml_schema = ml_schema
        self.catalog = catalog if catalog is not None else getattr(model, "catalog", None)
        if domain_schemas is None:
            self.domain_schemas = frozenset(
                s for s in model.schemas if s not in SYSTEM_SCHEMAS and s != ml_schema
            )
        elif isinstance(domain_schemas, str):
            self.domain_schemas = frozenset({domain_schemas})
        else:
            self.domain_schemas = frozenset(domain_schemas)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_catalog(cls, catalog: Any, **kwargs: Any) -> "DerivaModel":
        """Fetch the model of a live ``ErmrestCatalog``."""
        return cls(catalog.getCatalogModel(), catalog=catalog, **kwargs)

    @classmethod
    def from_json(cls, doc: dict, **kwargs: Any) -> "DerivaModel":
        """Build from a ``/schema`` document, for offline use and tests."""
        return cls(Model(None, doc), **kwargs)

    # -- where the catalog lives ----------------------------------------------------------
    @property
    def hostname(self) -> str:
        """Host (``host[:port]``) of the catalog, ``localhost`` when offline."""
        server = getattr(getattr(self.catalog, "deriva_server", None), "server", None)
        return server or "localhost"

    @property
    def scheme(self) -> str:
        """URL scheme of the catalog (the seed hard-coded https; seed quirk 13)."""
        server = getattr(self.catalog, "_server_uri", None) or ""
        return server.split("://", 1)[0] if "://" in server else "https"

    @property
    def default_schema(self) -> str | None:
        """The domain schema when there is exactly one."""
        return next(iter(self.domain_schemas)) if len(self.domain_schemas) == 1 else None

    # -- tables ---------------------------------------------------------------------------
    def name_to_table(self, table: "str | Table") -> Table:
        """Resolve a table name (or ``schema:table``) to a deriva-py ``Table``.

        Domain schemas are searched first (sorted), then the ML schema, then the rest,
        like the seed's model.
        """
        if isinstance(table, Table):
            return table
        if ":" in table:
            sname, tname = table.split(":", 1)
            try:
                return self.model.schemas[sname].tables[tname]
            except KeyError:
                raise DerivaMLException(f"The table {table} doesn't exist.") from None
        order = [*sorted(self.domain_schemas), self.ml_schema, *sorted(self.model.schemas)]
        for sname in order:
            schema = self.model.schemas.get(sname)
            if schema is not None and table in schema.tables:
                return schema.tables[table]
        raise DerivaMLException(f"The table {table} doesn't exist.")

    def is_asset(self, table: "str | Table") -> bool:
        """True if the table is an asset table (see :func:`is_asset_table`)."""
        return is_asset_table(self.name_to_table(table))

    def find_assets(self, with_metadata: bool = False) -> list[Table]:
        """Every asset table of every schema, in model order."""
        tables = [t for s in self.model.schemas.values() for t in s.tables.values() if is_asset_table(t)]
        if with_metadata:
            tables = [t for t in tables if asset_metadata_columns(t)]
        return tables

    def asset_metadata(self, table: "str | Table") -> list[str]:
        """Metadata columns of an asset table, sorted (the order paths and regexes use)."""
        t = self.name_to_table(table)
        if not is_asset_table(t):
            raise DerivaMLException(f"Table {t.name} is not an asset table.")
        return asset_metadata_columns(t)

    def is_vocabulary(self, table: "str | Table") -> bool:
        """True if the table has the vocabulary columns Name, ID, URI, Description, Synonyms."""
        t = self.name_to_table(table)
        return {"NAME", "URI", "SYNONYMS", "DESCRIPTION", "ID"} <= {c.name.upper() for c in t.column_definitions}
