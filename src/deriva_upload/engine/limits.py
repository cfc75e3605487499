"""Every limit of the upload engine in one place, each with the reason for its value.

Options (:class:`deriva_upload.engine.options.UploadOptions`) default to these; code
never repeats a literal limit elsewhere.
"""

from __future__ import annotations

MiB = 1024 * 1024

# Concurrent HTTP requests (object PUTs, HEADs, chunk PUTs). Hides a 50 ms round trip
# for small objects (32 in flight -> ~600 objects/s at 50 ms RTT) and lets a
# group-committing server batch its syncs (measured on the embedded catalog, 2,000 x
# 4 KB: 16 -> 1.7 s, 32 -> 1.3 s, 64 -> 1.1 s); the protocol notes suggest 8-32.
DEFAULT_WORKERS = 32

# Connections of the httpx pool used for ERMrest (look-ups, inserts: few requests).
# httpcore's pool bookkeeping costs O(connections^2) per request, so it stays small;
# object traffic uses the lean HTTP/1.1 client with ``workers`` connections.
POOL_CONNECTIONS = 4

# Threads that hash files. hashlib releases the GIL on buffers > 2 KiB, so threads
# scale with cores; two keeps one core free for the event loop on small machines.
DEFAULT_HASH_THREADS = 2

# Files up to this size are read once: the bytes hashed are the bytes sent (one PUT).
# 1 MiB keeps a full window of small files far below the memory budget.
SMALL_FILE_THRESHOLD = 1 * MiB

# Upper bound of file bytes held in memory at once (kept small-file bodies plus chunk
# buffers). Keeps peak RSS of a 100,000-file or 1 GiB run well below 200 MB.
MAX_INFLIGHT_BYTES = 64 * MiB

# GenericUploader's default chunk size and chunking threshold (deriva-py
# DEFAULT_CHUNK_SIZE): used when neither the caller nor the spec sets chunk_size, so
# the objects we create are split like the ones GenericUploader creates.
DEFAULT_CHUNK_SIZE = 25 * MiB

# Chunks of one upload job in flight at once. Four saturates loopback and typical
# links; more only multiplies buffer memory (4 x 25 MiB = 100 MiB at the default size).
CHUNKS_IN_FLIGHT = 4

# Read size while hashing large files: big enough that hashlib drops the GIL and the
# per-call overhead vanishes, small enough to stay cache-friendly.
HASH_READ_SIZE = 8 * MiB

# Small files hashed per worker-thread task: one thread hand-off per group instead of
# per file (4 KiB files are too small for hashlib to release the GIL anyway).
HASH_GROUP_FILES = 64
# ... and at most this many bytes per group, so a group of 1 MiB files stays small.
HASH_GROUP_BYTES = 4 * MiB

# Files prepared (hashed + looked up) per pipeline window. Bounds the per-window state
# (the journal and lookup results are kept only for the current windows).
WINDOW_FILES = 1000
# The first window is small so objects start moving while the rest is scanned and hashed;
# each following window doubles up to WINDOW_FILES.
FIRST_WINDOW_FILES = 64

# Values per ``col=any(...)`` look-up. A 32-hex MD5 costs ~35 URL bytes; 100 values keep
# the URL under ~4 KB, inside every proxy's default limit.
LOOKUP_BATCH = 100

# Rows per insert POST. ERMrest batches are atomic; 500 rows of an asset table are
# ~150 KB of JSON and insert in well under the 63 s deriva-py read timeout.
INSERT_BATCH = 500

# Journal rows written per transaction (one fsync per batch, not per file).
JOURNAL_BATCH = 500

# Rows kept in a report by default (UploadOptions.keep_records=None): a row costs ~0.6 KB,
# so 5,000 rows are ~3 MB while 100,000 would be ~60 MB on top of the per-file results
# (a 100,000-file run peaks at ~191 MB RSS with this limit; target 200 MB).
RECORDS_KEPT = 5_000

# Maximum time between two progress events of the same phase (seconds): keeps a CLI
# bar lively without turning 100,000 files into 100,000 callbacks.
EVENT_INTERVAL = 0.1
