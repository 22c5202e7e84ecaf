"""Data: sources of documents -> prepared token shards -> batches.

    sources.py   documents from tinyshakespeare, hub datasets (streamed) or local files
    cache.py     the gptlab home folder and checksum-verified downloads
    prepare.py   tokenize a source in parallel into a prepared folder (shards + meta.json)
    loader.py    (x, y) batches from a prepared folder: memmapped, deterministic, resumable

Submodules are imported where used, so `import gptlab.data` stays light.
"""
