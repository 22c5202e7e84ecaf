"""Data: sources of documents -> prepared token shards -> batches.

    sources.py          documents from named sources (tinyshakespeare, hub datasets, streamed) or files
    local_files.py      documents from local .txt, .jsonl, .json, .parquet and .csv files and folders
    cache.py            the gptlab home folder and checksum-verified downloads
    prepare.py          tokenize a source in parallel (parallel.py, progress.py) into a prepared folder
    prepared_folder.py  the prepared folder: meta.json, its tokenizer, the atomic build
    shards.py           the binary token shards
    loader.py           (x, y) batches from a prepared folder: memmapped, deterministic, resumable

Submodules are imported where used, so `import gptlab.data` stays light.
"""
