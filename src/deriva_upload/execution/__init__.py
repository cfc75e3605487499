"""Upload a whole staged DerivaML execution: assets, asset types, links, features, tables.

``deriva-ml/execution/<RID>/`` holds an execution's outputs in either layout:

* regex layout: ``asset/<schema>/<Table>/<meta_1>/.../<meta_n>/[<RID>/]<file>``;
* manifest-first layout: ``assets/<Table>/<file>`` plus ``asset-manifest.json`` holding
  each file's metadata, types and RID (read directly: no symlink staging tree);

plus ``asset-type/<schema>/<Table>.jsonl`` (``{"<file>": ["Type", ...]}``, later lines
win), feature values under ``feature/<schema>/<Target>/<Feature>/`` (``.csv``, ``.json``
or ``.jsonl``; asset columns hold local file paths) and table files at
``table/<schema>/<T>/<T>.csv`` (and at the seed's ``deriva-ml/table/...``, quirk 4).

The upload runs in two phases:

1. **Validate** everything locally and with read-only catalog look-ups (tables,
   columns, NOT NULL metadata, vocabulary terms, files, feature asset paths). Any
   problem raises :class:`ExecutionValidationError` listing every problem with its file
   and line; nothing has been written.
2. **Write**, in dependency order: asset files and rows (the engine pipeline), then
   ``<Asset>_Asset_Type`` rows, ``<Asset>_Execution`` rows (role ``Output``), feature rows
   with each local path replaced by the uploaded asset's RID, and table rows. A row
   that depends on an asset whose upload failed is not written; it is reported.

Re-runnable: every insert is idempotent. Asset rows are found again by the pipeline
(journal + MD5/Filename look-up); association and feature rows are inserted with
``onconflict=skip`` on their natural keys (``(<Asset>, Asset_Type)``,
``(<Asset>, Execution)``, ``(Execution, <Target>, Feature_Name)``). Rows of a table
whose only key is the server-assigned RID get a leased RID recorded *before* the insert
in a small SQLite ledger keyed by (destination, file, line, row content), so a rerun
after a crash re-sends the same RID and ``onconflict=skip`` drops the duplicate. The
ledger lives next to the engine's journal (``journal_dir``, else
``<prefix>/deriva-ml/.deriva-upload/``); its destination key is ``scheme://host/catalog``
as given, so reruns must name the catalog the same way (another host alias, or a lost
ledger, would insert such key-less rows again). An edited row is a new row.
"""

from __future__ import annotations

from deriva_upload.execution.problems import ExecutionValidationError, Problem
from deriva_upload.execution.report import ExecutionReport, TableTally
from deriva_upload.execution.run import upload_execution, upload_execution_async, upload_executions
from deriva_upload.execution.scan import scan_execution
from deriva_upload.execution.steps import write_features
from deriva_upload.execution.write import Writer

# Looked up here by ``run`` on every upload, so the crash tests can stop an upload
# between the execution links and the features.
_write_features = write_features

__all__ = [
    "ExecutionReport",
    "ExecutionValidationError",
    "Problem",
    "TableTally",
    "Writer",
    "scan_execution",
    "upload_execution",
    "upload_execution_async",
    "upload_executions",
]
